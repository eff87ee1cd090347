"""kfound: Keras 3 components and recipes from the foundations of deep learning.

Importing `kfound` registers every serializable class (the layers and the initializers)
with Keras, so `keras.saving.load_model` loads a model that uses them after `import kfound`
alone.
"""

from kfound import initializers as initializers
from kfound import layers as layers

__version__ = "0.1.0"
