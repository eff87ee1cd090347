import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from kfound import resume


def _pipeline(balance=False):
    x = np.arange(12, dtype="float32").reshape(6, 2)
    y = np.array([0, 0, 0, 0, 1, 1], dtype="int32")
    return resume.EpochPipeline(tf.data.Dataset.from_tensor_slices((x, y)), 2, 6, 4,
                                balance=balance, seed=3)


def _epochs(stream, steps):
    batches = [b[0].numpy()[:, 0].tolist() for b in stream]
    return [sum(batches[i:i + steps], []) for i in range(0, len(batches), steps)]


@pytest.mark.parametrize("balance", [False, True])
def test_an_epochs_batches_depend_on_the_seed_and_epoch_alone(balance):
    pipeline = _pipeline(balance)
    assert pipeline.steps == 2
    everything = _epochs(pipeline.batches(0, 4), pipeline.steps)
    assert len(everything) == 4 and len({tuple(e) for e in everything}) > 1  # reshuffled
    again = pipeline.batches(0, 4)
    list(again)  # iterating a stream once changes nothing for the next one
    assert _epochs(pipeline.batches(2, 4), pipeline.steps) == everything[2:]
    assert _epochs(_pipeline(balance).batches(1, 3), 2) == everything[1:3]


@pytest.mark.parametrize("balance", [False, True])
def test_fit_reads_the_stream_once_on_jax_and_torch(balance):
    # Their `fit` reads a dataset twice (a first batch to build the model, then from the
    # start), and a first iterator left prefetching ahead shifts what a second one reads.
    if keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow's fit reads its dataset once")
    pipeline = _pipeline(balance)
    stream = pipeline.fit_data(0, 3)
    assert iter(stream) is stream  # one pass: a second `iter` cannot start another read
    got = [x for x, _ in stream]
    want = [x.numpy() for x, _ in pipeline.batches(0, 3)]
    assert len(got) == len(want) == 3 * pipeline.steps
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def _model():
    keras.utils.set_random_seed(0)
    # A seeded Dropout: Keras's torch Dropout without one draws from torch's global
    # generator, which no checkpoint holds (kfound's Classifier seeds its own for that).
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dropout(0.5, seed=1),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def _fit(model, checkpoint, start, epochs=3, callbacks=()):
    pipeline = _pipeline()
    model.fit(pipeline.batches(start, epochs), epochs=epochs, initial_epoch=start,
              steps_per_epoch=pipeline.steps, callbacks=[checkpoint, *callbacks], verbose=0,
              shuffle=False)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("simulated kill")


def _interrupted(folder):
    model = _model()
    with pytest.raises(KeyboardInterrupt):
        _fit(model, resume.TrainingCheckpoint(folder, log=lambda m: None), 0,
             callbacks=[_Interrupt()])


def test_restore_brings_back_weights_optimizer_random_state_and_history(tmp_path):
    reference = _model()
    recorder = resume.TrainingCheckpoint(None)
    _fit(reference, recorder, 0)
    _interrupted(tmp_path / "backup")
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == ["epoch-0001", "epoch-0002"]
    model, messages = _model(), []
    checkpoint = resume.TrainingCheckpoint(tmp_path / "backup", log=messages.append)
    start = checkpoint.restore(model)
    assert start == 2 and "restored epoch 2" in messages[0]
    [generator] = resume.seed_generators(model)
    assert int(model.optimizer.iterations.numpy()) == 4
    assert generator.state.numpy()[1] == 4  # dropout drew 4 masks before the interruption
    _fit(model, checkpoint, start)
    assert [r["epoch"] for r in checkpoint.history] == [1, 2, 3]
    for got, want in zip(checkpoint.history, recorder.history, strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-6)
    for got, want in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_a_damaged_backup_is_named_and_the_one_before_is_used(tmp_path):
    _interrupted(tmp_path / "backup")
    latest = tmp_path / "backup" / "epoch-0002" / "model.weights.h5"
    latest.write_bytes(latest.read_bytes()[:500])  # a write cut short
    messages = []
    start = resume.TrainingCheckpoint(tmp_path / "backup", log=messages.append).restore(_model())
    assert start == 1
    assert str(latest) in messages[0] and "damaged" in messages[0]
    assert "restored epoch 1" in messages[1]


@pytest.mark.parametrize("damage", ["weights", "state"])
def test_with_every_backup_damaged_training_starts_over(tmp_path, damage):
    _interrupted(tmp_path / "backup")
    for folder in (tmp_path / "backup").iterdir():
        if damage == "weights":
            (folder / "model.weights.h5").write_bytes(b"")
        else:
            (folder / "state.json").write_text('{"epoch": 2, "hist')
    messages = []
    model = _model()
    start = resume.TrainingCheckpoint(tmp_path / "backup", log=messages.append).restore(model)
    assert start == 0 and len(messages) == 3
    assert "starting this training from its first epoch" in messages[-1]
    assert int(model.optimizer.iterations.numpy()) == 0


def test_a_partial_checkpoint_is_ignored(tmp_path):
    _interrupted(tmp_path / "backup")
    partial = tmp_path / "backup" / "epoch-0003.partial"
    partial.mkdir()
    (partial / "state.json").write_text(json.dumps({"epoch": 3}))  # killed mid-write
    assert resume.TrainingCheckpoint(tmp_path / "backup", log=lambda m: None).restore(
        _model()) == 2
