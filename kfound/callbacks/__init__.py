"""Training diagnostics callbacks."""

from kfound.callbacks.activation_monitor import ActivationMonitor as ActivationMonitor
from kfound.callbacks.epoch_timer import EpochTimer as EpochTimer
from kfound.callbacks.gradient_monitor import GradientMonitor as GradientMonitor
from kfound.callbacks.monitor import ActivationWarning as ActivationWarning
from kfound.callbacks.monitor import GradientWarning as GradientWarning
