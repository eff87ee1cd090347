"""One compiled head for many heads: the results of fresh compiles, traced once."""

import random

import keras
import numpy as np
import pytest
from finetune_test_utils import embedded_data

from kfound import backbones, finetune
from kfound.compiled_head import CompiledHead
from kfound.resume import seed_generators


class _ModelSeen(keras.callbacks.Callback):
    """Records the model that each `fit` trained, and its train function."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_end(self, logs=None):
        self.seen.append((self.model, self.model.train_function))


def _train_heads(compiled_head, settings):
    """Trains a head per `(learning_rate, dropout)` on one shared, frozen backbone."""
    loaded = embedded_data()
    keras.utils.set_random_seed(0)
    backbone = backbones.build_backbone("SmallConvNet", image_size=loaded.image_size)
    seen, results = _ModelSeen(), []
    for index, (learning_rate, dropout) in enumerate(settings):
        keras.utils.set_random_seed(index + 1)  # each head its own weights and dropout seed
        classifier = finetune.Classifier(backbone, "SmallConvNet", loaded.num_classes,
                                         dropout=dropout)
        options = finetune.TrainingOptions(learning_rate=learning_rate, callbacks=[seen],
                                           verbose=0, log=lambda message: None)
        history = finetune.fit_head(classifier, loaded, epochs=3, options=options,
                                    compiled_head=compiled_head)
        states = [keras.ops.convert_to_numpy(g.state) for g in seed_generators(classifier.head)]
        results.append((history, classifier.head.get_weights(), states, classifier.head))
    return results, seen.seen


def test_heads_trained_on_one_compiled_head_end_as_freshly_compiled_ones():
    settings = [(1e-2, 0.2), (3e-3, 0.2), (1e-2, 0.5), (3e-2, 0.2)]
    reused, seen = _train_heads(CompiledHead(), settings)
    fresh, fresh_seen = _train_heads(None, settings)
    for (history, weights, states, _), (expected, weights_, states_, _) in zip(
            reused, fresh, strict=True):
        assert history == expected  # every loss and metric, to the bit
        for got, want in zip(weights + states, weights_ + states_, strict=True):
            np.testing.assert_array_equal(got, want)
    assert len({id(model) for model, _ in fresh_seen}) == len(settings)  # each its own head
    if keras.backend.backend() == "torch":  # its fit traces nothing: no copy is used
        assert [model for model, _ in seen] == [head for *_, head in reused]
        return
    models = [model for model, _ in seen]
    assert not any(model is head for model, (*_, head) in zip(models, reused, strict=True))
    # The second head trains on the first one's copy, traced functions and all; another
    # dropout rate needs another copy, which the fourth head (0.2 again) replaces.
    assert models[1] is models[0] and seen[1][1] is seen[0][1]
    assert models[2] is not models[0] and models[3] not in (models[0], models[2])


def test_a_new_copy_leaves_the_python_random_state_alone():
    heads = CompiledHead()
    head = keras.Sequential([keras.layers.Dropout(0.5), keras.layers.Dense(2)])
    head.build((None, 3))
    state = random.getstate()
    model = heads.prepare(head, 1e-3, ["adam"],
                          lambda m: m.compile(keras.optimizers.Adam(), "mse"))
    assert random.getstate() == state  # the heads built after it draw the same seeds
    assert model is not head and model.optimizer.learning_rate.numpy() == pytest.approx(1e-3)
    assert heads.prepare(head, 1e-2, ["sgd"],
                         lambda m: m.compile(keras.optimizers.SGD(), "mse")) is not model
