"""Keras 3 initializers: SparseInitializer."""
from kfound.initializers.sparse_initializer import SparseInitializer as SparseInitializer
