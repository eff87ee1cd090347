"""Keras 3 layers: LRN, GroupNorm, WeightNorm, LocallyConnected2D, RandomPCALighting."""
