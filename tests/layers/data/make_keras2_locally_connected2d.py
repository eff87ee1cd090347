"""Records Keras 2 LocallyConnected2D configs, weights and outputs for the tests.

Run once with Keras 2 (the tf-keras package, 2.21) importable, beside TensorFlow:
    python tests/layers/data/make_keras2_locally_connected2d.py \
        tests/layers/data/keras2_locally_connected2d
It writes NAME.json (the configs as Keras 2 writes them) and NAME.npz (inputs, weights,
outputs). The tests need only those two files, not Keras 2.
"""

import json
import sys

import numpy as np
import tf_keras

# filters, kernel_size, strides, padding, data_format, implementation, input shape.
CASES = [
    (3, (3, 2), (1, 2), "valid", "channels_last", 1, (2, 6, 7, 2)),
    (3, (3, 2), (1, 2), "valid", "channels_last", 2, (2, 6, 7, 2)),
    (3, (3, 2), (1, 2), "valid", "channels_first", 2, (2, 2, 6, 7)),
    (2, (3, 3), (2, 1), "valid", "channels_last", 3, (2, 7, 5, 2)),
    (2, (3, 3), (2, 1), "valid", "channels_first", 3, (2, 2, 7, 5)),
    (2, (3, 3), (1, 1), "same", "channels_last", 2, (2, 5, 6, 2)),
    (2, (3, 3), (1, 1), "same", "channels_first", 3, (2, 2, 5, 6)),
    (2, (2, 2), (1, 1), "same", "channels_last", 2, (2, 4, 4, 1)),
]
rng = np.random.default_rng(0)
out = {}
records = []
for n, (filters, kernel_size, strides, padding, data_format, implementation, shape) in enumerate(
    CASES
):
    layer = tf_keras.layers.LocallyConnected2D(
        filters, kernel_size, strides=strides, padding=padding, data_format=data_format,
        activation="relu", implementation=implementation,
    )
    x = rng.standard_normal(shape).astype("float32")
    layer.build(shape)
    weights = [rng.standard_normal(w.shape).astype("float32") for w in layer.get_weights()]
    layer.set_weights(weights)
    y = layer(x).numpy()
    records.append({"config": layer.get_config(), "input_shape": list(shape)})
    out[f"x{n}"] = x
    out[f"y{n}"] = y
    for k, w in enumerate(weights):
        out[f"w{n}_{k}"] = w
np.savez_compressed(sys.argv[1] + ".npz", **out)
with open(sys.argv[1] + ".json", "w") as file:
    json.dump(records, file, indent=1)
