"""Training diagnostics callbacks."""

from kfound.callbacks.diagnostics import ActivationWarning as ActivationWarning
from kfound.callbacks.diagnostics import GradientWarning as GradientWarning
from kfound.callbacks.gradient_monitor import GradientMonitor as GradientMonitor
