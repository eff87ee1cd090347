"""Keras 3 layers: LRN, GroupNorm, WeightNorm, LocallyConnected2D, RandomPCALighting."""
from kfound.layers.group_norm import GroupNorm as GroupNorm
from kfound.layers.group_norm import replace_batchnorm as replace_batchnorm
from kfound.layers.lrn import LRN as LRN
