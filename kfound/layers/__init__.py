"""Keras 3 layers: LRN, GroupNorm, WeightNorm, LocallyConnected2D, RandomPCALighting."""
from kfound.layers.locally_connected2d import LocallyConnected2D as LocallyConnected2D
from kfound.layers.random_pca_lighting import RandomPCALighting as RandomPCALighting
from kfound.layers.random_pca_lighting import fit_pca_lighting as fit_pca_lighting
