"""Training diagnostics callbacks."""
