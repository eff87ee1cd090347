import os
import subprocess
import sys

import pytest

from kfound.data import DatasetSpec, parse_dataset


@pytest.mark.parametrize("text, kind, target, slug", [
    ("digits", "digits", None, "digits"),
    ("embedded", "embedded", None, "embedded"),
    ("tfds:tf_flowers", "tfds:NAME", "tf_flowers", "tf_flowers"),
    ("folder:/data/my photos/", "folder:PATH", "/data/my photos/", "my_photos"),
])
@pytest.mark.backend_independent
def test_every_kind_parses_and_prints_back(text, kind, target, slug):
    spec = parse_dataset(text)
    assert (spec.kind, spec.target, spec.slug) == (kind, target, slug)
    assert parse_dataset(str(spec)) == spec
    assert parse_dataset(spec) is spec


@pytest.mark.parametrize("text, kinds, error, match", [
    ("mnist", None, ValueError, r"must be one of digits, embedded, tfds:NAME, folder:PATH\. "
                                r"Received: dataset='mnist'"),
    ("tfds:", None, ValueError, r"Received: dataset='tfds:'"),
    ("folder:  ", None, ValueError, r"Received: dataset='folder:  '"),
    ("digits", ("embedded", "folder:PATH"), ValueError,
     r"must be one of embedded, folder:PATH\. Received: dataset='digits'"),
    (3, None, TypeError, r"must be a string.*Received: dataset=3"),
])
@pytest.mark.backend_independent
def test_bad_names_are_clear_errors(text, kinds, error, match):
    kwargs = {} if kinds is None else {"kinds": kinds}
    with pytest.raises(error, match=match):
        parse_dataset(text, **kwargs)


@pytest.mark.backend_independent
def test_the_argument_name_is_the_callers():
    with pytest.raises(ValueError, match=r"Argument `images` .* Received: images='x'"):
        parse_dataset("x", argument="images")


@pytest.mark.backend_independent  # its subprocess runs JAX, whatever this backend
def test_parsing_imports_no_tensorflow():
    # Under the TensorFlow backend `import keras` itself imports TensorFlow; under JAX
    # nothing that parsing needs does.
    code = ("import sys; from kfound.data import parse_dataset; parse_dataset('tfds:mnist'); "
            "print('tensorflow' in sys.modules)")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, env=env)
    assert result.stdout.strip() == "False"


@pytest.mark.backend_independent
def test_spec_is_a_value():
    assert DatasetSpec("tfds:NAME", "mnist") == parse_dataset("tfds:mnist")
