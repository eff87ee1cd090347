"""One compiled head that trains many heads of one architecture, so `fit` traces once."""

import json
import random

import keras

from kfound import prebuild
from kfound.resume import seed_generators


class CompiledHead:
    """Trains heads of one architecture in turn on one compiled model.

    Compiling a model discards its traced train and test functions, so every freshly
    compiled head traces them again in its first `fit`: on cached features that is most
    of a head's training. A search trains many heads that differ only in their learning
    rate and initial weights. Passed to each of their `kfound.finetune.fit_head` calls,
    a `CompiledHead` trains them all on one compiled copy (`prepare`): before each fit,
    the copy takes the head's weights and random state, a freshly built optimizer's
    state and the head's learning rate; after it, the head takes back the trained
    weights and random state (`give_back`). The same variables then start from the same
    values and run the same traced computation, so each head ends exactly as a freshly
    compiled one would, and only the first head of an architecture traces.

    It keeps one compiled copy: a head whose architecture or compile settings differ
    from the last one's (its input shape, `settings`, or config: a `keras.Sequential`'s
    layers' configs, their names aside, any other model's whole config) replaces it.

    Example:

    >>> heads = CompiledHead()
    >>> def compile_head(model):
    ...     model.compile(keras.optimizers.Adam(1e-3), "mse")
    >>> def new_head():
    ...     head = keras.Sequential([keras.layers.Dense(1)])
    ...     head.build((None, 4))
    ...     return head
    >>> first = heads.prepare(new_head(), 1e-3, ("adam",), compile_head)
    >>> heads.prepare(new_head(), 1e-2, ("adam",), compile_head) is first
    True
    """

    def __init__(self):
        self._key = None
        self._model = None
        self._fresh_optimizer = None  # its optimizer's variables, as built

    def prepare(self, head, learning_rate, settings, compile):
        """The compiled copy of `head`, holding `head`'s weights and random state.

        Args:
            head: a built `keras.Model`: the head to train.
            learning_rate: its learning rate (a float).
            settings: whatever else its compiled functions depend on (optimizer name,
                `jit_compile`, `steps_per_execution`, ...), as a JSON-serializable value;
                a head with other settings than the last one gets a new copy.
            compile: called with a new copy to compile it as `head` would be.

        Returns:
            The compiled `keras.Model` to fit in place of `head`, its optimizer state that
            of a new optimizer with `learning_rate`.
        """
        key = json.dumps([_architecture(head), list(head.input_shape), settings],
                         sort_keys=True, default=repr)
        if key != self._key:
            self._key, self._model = None, None
            # A clone draws the seeds of its unseeded layers and initializers from
            # Python's `random`, as Keras does; its weights are overwritten below, and the
            # state is put back so that the heads built after it get the same seeds.
            state = random.getstate()
            try:
                model = keras.models.clone_model(head)
            finally:
                random.setstate(state)
            model.build(head.input_shape)
            compile(model)
            prebuild.build_optimizer(model)
            self._fresh_optimizer = [keras.ops.convert_to_numpy(v)
                                     for v in model.optimizer.variables]
            self._key, self._model = key, model
        model = self._model
        _copy_state(head, model)
        for variable, value in zip(model.optimizer.variables, self._fresh_optimizer,
                                   strict=True):
            variable.assign(value)
        model.optimizer.learning_rate = learning_rate
        return model

    def give_back(self, head):
        """Gives `head` the trained weights and random state of the last `prepare`'s copy."""
        _copy_state(self._model, head)


def _architecture(head):
    """What `head` computes: a `Sequential`'s layers without the names Keras gave them."""
    if not isinstance(head, keras.Sequential):
        return head.get_config()
    return [(type(layer).__name__, {k: v for k, v in layer.get_config().items() if k != "name"})
            for layer in head.layers]


def _copy_state(source, target):
    """Copies `source`'s weights and seed-generator states into `target` (same layers)."""
    target.set_weights(source.get_weights())
    for source_generator, target_generator in zip(seed_generators(source),
                                                  seed_generators(target), strict=True):
        target_generator.state.assign(source_generator.state.value)
