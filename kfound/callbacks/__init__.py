"""Training diagnostics callbacks."""
from kfound.callbacks.epoch_timer import EpochTimer  # noqa: F401
