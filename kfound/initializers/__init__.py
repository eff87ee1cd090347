"""Keras 3 initializers: SparseInitializer."""
