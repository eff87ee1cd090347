"""Keras 3 layers: LRN, GroupNorm, WeightNorm, LocallyConnected2D, RandomPCALighting."""
from kfound.layers.locally_connected2d import LocallyConnected2D as LocallyConnected2D
