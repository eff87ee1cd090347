"""Keras 3 layers: LRN, GroupNorm, WeightNorm, LocallyConnected2D, RandomPCALighting."""
from kfound.layers.weight_norm import WeightNorm as WeightNorm
