"""`import kfound` alone is enough to load a saved model that uses kfound's classes."""

import subprocess
import sys

import keras


def test_import_kfound_alone_loads_every_registered_class(tmp_path):
    from kfound.initializers import SparseInitializer
    from kfound.layers import LRN, BackbonePreprocessing, GroupNorm

    inputs = keras.Input((8, 8, 3))
    x = BackbonePreprocessing("SmallConvNet")(inputs)
    x = keras.layers.Conv2D(4, 3, kernel_initializer=SparseInitializer(connections=3, seed=0))(x)
    x = GroupNorm(groups=2)(LRN()(x))
    path = tmp_path / "model.keras"
    keras.Model(inputs, x).save(path)
    code = (f"import kfound, keras; model = keras.saving.load_model({str(path)!r}); "
            "print(sorted({type(l).__name__ for l in model.layers}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    names = result.stdout.strip().splitlines()[-1]
    for name in ("BackbonePreprocessing", "GroupNorm", "LRN"):
        assert name in names
