"""Reading space files within bounds: size, depth, aliases, duplicate keys, encoding."""

import json
import tracemalloc

import pytest

from kfound.tuning import space_file


def test_yaml_reads_exponents_as_floats(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("model: mlp\ndataset: digits\nobjective: {name: val_loss, direction: min}\n"
                    "hyperparameters:\n  learning_rate: {type: float, min: 1e-4, max: 1e-2}\n")
    config = space_file.read_space_file(path)
    assert config["hyperparameters"]["learning_rate"] == {"type": "float", "min": 1e-4,
                                                          "max": 1e-2}
    assert config["objective"] == {"name": "val_loss", "direction": "min"}


@pytest.mark.parametrize("name, text, match", [
    ("s.txt", "", r"must be a .yaml, .yml or .json file"),
    ("s.json", "{not json", r"not valid JSON"),
    ("s.yaml", "model: [", r"not valid YAML"),
])
def test_unreadable_files_are_rejected(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        space_file.read_space_file(path)


def test_missing_file_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"existing file. Received: space="):
        space_file.read_space_file(tmp_path / "absent.yaml")


# Hostile files: each is refused at once, in bounded memory, with a short message.
_LAUGHS = "\n".join(
    ["model: mlp", "dataset: digits", f"a: &a [{','.join(['lol'] * 9)}]"]
    + [f"{b}: &{b} [{','.join(['*' + a] * 9)}]"
       for a, b in zip("abcdefgh", "bcdefghi", strict=True)]
    + ["hyperparameters: {activation: {type: choice, values: *i}}"]
)


def _refused(path, match):
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match) as error:
            space_file.read_space_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(error.value)
    assert len(message) < 600 and "\n" not in message
    return peak


def test_billion_laughs_is_refused_before_it_expands(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(_LAUGHS)
    assert path.stat().st_size < 600
    peak = _refused(path, r"laughs\.yaml: the file is refused: it expands to more than "
                          r"10,000 values \(space_file\.MAX_NODES")
    assert peak < 5_000_000


def test_a_few_aliases_are_fine(tmp_path):
    path = tmp_path / "aliases.yaml"
    path.write_text("model: mlp\ndataset: digits\nhyperparameters:\n"
                    "  units: &range {type: int, min: 4, max: 32}\n  layers: *range\n")
    assert space_file.read_space_file(path)["hyperparameters"]["layers"]["max"] == 32


def test_an_oversized_file_is_refused_unread(tmp_path):
    path = tmp_path / "big.json"
    entry = json.dumps({"type": "choice", "values": ["relu"] * 1_000_000})
    path.write_text(f'{{"model": "mlp", "dataset": "digits", "hyperparameters": '
                    f'{{"activation": {entry}}}}}')
    peak = _refused(path, r"holds at most 1,000,000 bytes \(space_file\.MAX_FILE_BYTES\); this one "
                          r"holds [\d,]+\. Received: space=")
    assert peak < 3 * space_file.MAX_FILE_BYTES


@pytest.mark.parametrize("name, text, match", [
    ("dup.yaml", "model: mlp\ndataset: digits\nmodel: cnn\nhyperparameters: {}\n",
     r"the key 'model' is given twice in one mapping \(line 3\)"),
    ("dup.yaml", "model: mlp\ndataset: digits\nhyperparameters:\n"
     "  units: {type: int, min: 1, max: 4, max: 8}\n", r"the key 'max' is given twice"),
    ("dup.json", '{"model": "mlp", "model": "cnn"}', r"the key 'model' is given twice"),
    ("deep.json", "[" * 100_000 + "]" * 100_000, r"nests deeper than 16 levels"),
    ("deep.json", "[" * 20 + "]" * 20, r"nests deeper than 16 levels"),
    ("deep.yaml", "a: " + "[" * 100_000, r"nests deeper than 16 levels"),
    ("deep.yaml", "a: " + "[" * 20 + "]" * 20, r"nests deeper than 16 levels"),
])
def test_duplicate_keys_and_deep_nesting_are_refused(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    _refused(path, match)


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("model: mlp\ndataset: digits # café\n".encode("latin-1"))
    _refused(path, r"must be UTF-8 text; byte 0xe9 at offset 32 is not\. Received: space=")
