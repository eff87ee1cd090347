"""Keras 3 layers: LRN, GroupNorm, WeightNorm, LocallyConnected2D, RandomPCALighting, and
`BackbonePreprocessing` (a backbone's own input preprocessing, inside saved classifiers)."""
from kfound.layers.backbone_preprocessing import BackbonePreprocessing as BackbonePreprocessing
from kfound.layers.group_norm import GroupNorm as GroupNorm
from kfound.layers.group_norm import group_count as group_count
from kfound.layers.group_norm import replace_batchnorm as replace_batchnorm
from kfound.layers.locally_connected2d import LocallyConnected2D as LocallyConnected2D
from kfound.layers.lrn import LRN as LRN
from kfound.layers.normalization import NORMALIZATIONS as NORMALIZATIONS
from kfound.layers.normalization import normalization_block as normalization_block
from kfound.layers.random_pca_lighting import RandomPCALighting as RandomPCALighting
from kfound.layers.random_pca_lighting import fit_pca_lighting as fit_pca_lighting
from kfound.layers.weight_norm import WeightNorm as WeightNorm
