"""kfound: Keras 3 components and recipes from the foundations of deep learning."""

__version__ = "0.1.0"
