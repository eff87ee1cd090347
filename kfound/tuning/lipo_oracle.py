"""The AdaLIPO global optimizer as a KerasTuner `Oracle`."""

import math

import keras_tuner as kt
import numpy as np
from keras_tuner.src.engine import hyperparameters as hp_module

_BATCH = 1000  # candidates drawn and scored at once


class LIPOOracle(kt.Oracle):
    """AdaLIPO: Lipschitz global optimization with an adaptive Lipschitz constant.

    Each trial draws its hyperparameters as AdaLIPO does (Malherbe & Vayatis, 2017,
    Algorithm 3), maximizing `f` (the score, negated when the objective is minimized):

    1. The first point is drawn uniformly.
    2. Then, with probability `exploration_probability`, the next point is drawn
       uniformly (exploration). Otherwise uniform candidates are drawn until one is a
       *potential maximizer*: its Lipschitz upper bound
       `min_i f(x_i) + k * ||x - x_i||` is at least the best score so far
       (exploitation, by rejection sampling).
    3. `k` is the smallest value on the geometric grid `(1 + alpha)^i`, `i` in Z, that
       is at least every slope `|f(x_i) - f(x_j)| / ||x_i - x_j||` seen so far.

    Coordinates. Each `Float`, `Int` and ordered (numeric) `Choice` is mapped to
    `[0, 1]` with KerasTuner's `value_to_prob`, so log sampling is respected and
    discrete values sit at the centre of their bucket. An unordered `Choice` (strings)
    or a `Boolean` is a categorical coordinate: it adds 0 to the squared distance when
    two points agree and 1 (the width of a numeric range) when they differ. `Fixed`
    values are ignored. Candidates are drawn uniformly in these coordinates, which is
    KerasTuner's `random_sample` distribution.

    Every decision is made from the completed trials and a generator seeded with
    `(seed, trial number)`, so the oracle's state is rebuilt from its saved trials:
    a resumed search proposes what the uninterrupted one would have. Ongoing trials
    (in a distributed search) do not enter the bound; KerasTuner's duplicate check
    keeps them from being proposed twice.

    Where the paper loops until a potential maximizer appears, this oracle stops after
    `max_candidates` draws and takes the candidate with the largest upper bound (that
    only happens when the potential maximizers are a tiny part of the space). When no
    untried point is found in `max_candidates` draws (a small discrete space is
    exhausted), the search stops, as KerasTuner's random search does.

    Args:
        objective: as for `keras_tuner.Oracle`: a metric name or `keras_tuner.Objective`.
        max_trials: the number of trials. Defaults to `10`.
        exploration_probability: `p`, the chance of a uniform draw. Defaults to `0.1`
            (the paper's setting).
        alpha: the ratio of the Lipschitz-constant grid, `k_i = (1 + alpha)^i`. Defaults
            to `0.01` (the paper's setting).
        max_candidates: the most candidates drawn for one trial. Defaults to `10000`.
        seed: the random seed.
        hyperparameters, allow_new_entries, tune_new_entries, max_retries_per_trial,
        max_consecutive_failed_trials: as for `keras_tuner.Oracle`.

    Example (minimizing a function through the Oracle API, without a model):

    ```python
    hp = kt.HyperParameters()
    hp.Float("x", -1.0, 1.0)
    oracle = LIPOOracle(kt.Objective("f", "min"), max_trials=30, hyperparameters=hp, seed=1)
    oracle._set_project_dir("/tmp/lipo", "example")
    for _ in range(30):
        trial = oracle.create_trial("tuner0")
        x = trial.hyperparameters.get("x")
        oracle.update_trial(trial.trial_id, {"f": (x - 0.3) ** 2})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    oracle.get_best_trials()[0].hyperparameters.get("x")  # close to 0.3
    ```

    Reference:
        Malherbe, C. and Vayatis, N. "Global optimization of Lipschitz functions".
        ICML 2017. https://arxiv.org/abs/1703.02628
    """

    def __init__(self, objective=None, max_trials=10, exploration_probability=0.1, alpha=0.01,
                 max_candidates=10000, seed=None, hyperparameters=None, allow_new_entries=True,
                 tune_new_entries=True, max_retries_per_trial=0, max_consecutive_failed_trials=3):
        if not 0.0 <= exploration_probability <= 1.0:
            raise ValueError(
                "Argument `exploration_probability` must be in [0, 1]. "
                f"Received: exploration_probability={exploration_probability}"
            )
        if not alpha > 0:
            raise ValueError(f"Argument `alpha` must be > 0. Received: alpha={alpha}")
        if not isinstance(max_candidates, int) or max_candidates < 1:
            raise ValueError(
                f"Argument `max_candidates` must be an integer >= 1. "
                f"Received: max_candidates={max_candidates}"
            )
        super().__init__(
            objective=objective, max_trials=max_trials, hyperparameters=hyperparameters,
            allow_new_entries=allow_new_entries, tune_new_entries=tune_new_entries, seed=seed,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        self.exploration_probability = exploration_probability
        self.alpha = alpha
        self.max_candidates = max_candidates

    def populate_space(self, trial_id):
        space = [hp for hp in self.hyperparameters.space if not isinstance(hp, hp_module.Fixed)]
        rng = np.random.default_rng([self.seed, len(self.trials)])
        points, scores = self._completed_points(space)
        explore = len(scores) == 0 or rng.random() < self.exploration_probability
        if not explore:
            k = lipschitz_estimate(points, scores, space, self.alpha)
            best = scores.max()
        fallback, fallback_bound = None, -np.inf
        for _ in range(math.ceil(self.max_candidates / _BATCH)):
            probs, coords = self._sample(space, rng, _BATCH)
            if explore:
                order = range(_BATCH)
            else:
                bounds = upper_bounds(coords, points, scores, space, k)
                # Potential maximizers in draw order (the first one is a uniform draw from
                # their set), then the rest by decreasing bound as fallbacks.
                accepted = np.flatnonzero(bounds >= best)
                order = accepted if len(accepted) else np.argsort(-bounds)[:1]
            for i in order:
                candidate = self._active_values(
                    {hp.name: _python(hp.prob_to_value(p)) for hp, p in zip(space, probs[i],
                                                                          strict=True)})
                if self._duplicate(candidate):
                    continue
                if explore or bounds[i] >= best:
                    return {"status": "RUNNING", "values": candidate}
                if bounds[i] > fallback_bound:
                    fallback, fallback_bound = candidate, bounds[i]
        if fallback is not None:
            return {"status": "RUNNING", "values": fallback}
        return {"status": "STOPPED", "values": None}

    def _completed_points(self, space):
        """The completed trials as coordinates, and their scores to maximize."""
        points, scores = [], []
        sign = 1.0 if self.objective.direction == "max" else -1.0
        for trial in self.trials.values():
            if trial.status != "COMPLETED" or trial.score is None:
                continue
            values = trial.hyperparameters.values
            points.append([_coordinate(hp, values.get(hp.name, hp.default)) for hp in space])
            scores.append(sign * trial.score)
        return np.asarray(points, dtype="float64").reshape(-1, len(space)), np.asarray(scores)

    def _sample(self, space, rng, n):
        """`n` uniform candidates: their cumulative probabilities and their coordinates."""
        probs = rng.random((n, len(space)))
        coords = probs.copy()
        for j, hp in enumerate(space):
            if _is_categorical(hp):
                coords[:, j] = np.minimum(np.floor(probs[:, j] * len(hp.values)),
                                          len(hp.values) - 1)
            elif not (isinstance(hp, hp_module.Float) and hp.step is None):
                # A discrete value sits at the centre of its bucket, not where it was drawn.
                coords[:, j] = [_coordinate(hp, hp.prob_to_value(p)) for p in probs[:, j]]
        return probs, coords

    def _active_values(self, values):
        hps = hp_module.HyperParameters()
        for hp in self.hyperparameters.space:
            hps.merge([hp])
            if hps.is_active(hp):
                hps.values[hp.name] = hp.value if isinstance(hp, hp_module.Fixed) else values[
                    hp.name]
        return hps.values

    def get_state(self):
        state = super().get_state()
        state.update({
            "exploration_probability": self.exploration_probability,
            "alpha": self.alpha,
            "max_candidates": self.max_candidates,
        })
        return state

    def set_state(self, state):
        super().set_state(state)
        self.exploration_probability = state["exploration_probability"]
        self.alpha = state["alpha"]
        self.max_candidates = state["max_candidates"]


class LIPOSearch(kt.Tuner):
    """A `keras_tuner.Tuner` driven by `LIPOOracle`.

    Args:
        hypermodel: a `keras_tuner.HyperModel` or a `build(hp)` function.
        objective, max_trials, exploration_probability, alpha, max_candidates, seed,
        hyperparameters, tune_new_entries, allow_new_entries, max_retries_per_trial,
        max_consecutive_failed_trials: as for `LIPOOracle`.
        **kwargs: as for `keras_tuner.Tuner` (`directory`, `project_name`, ...).

    Example:

    ```python
    tuner = LIPOSearch(build_model, objective="val_accuracy", max_trials=20)
    tuner.search(x, y, validation_data=(x_val, y_val), epochs=5)
    ```
    """

    def __init__(self, hypermodel=None, objective=None, max_trials=10,
                 exploration_probability=0.1, alpha=0.01, max_candidates=10000, seed=None,
                 hyperparameters=None, tune_new_entries=True, allow_new_entries=True,
                 max_retries_per_trial=0, max_consecutive_failed_trials=3, **kwargs):
        oracle = LIPOOracle(
            objective=objective, max_trials=max_trials,
            exploration_probability=exploration_probability, alpha=alpha,
            max_candidates=max_candidates, seed=seed, hyperparameters=hyperparameters,
            tune_new_entries=tune_new_entries, allow_new_entries=allow_new_entries,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        super().__init__(oracle, hypermodel, **kwargs)


def _python(value):
    """A NumPy scalar as the Python value KerasTuner stores."""
    return value.item() if isinstance(value, np.generic) else value


def _is_categorical(hp):
    return isinstance(hp, hp_module.Boolean) or (
        isinstance(hp, hp_module.Choice) and not hp.ordered
    )


def _coordinate(hp, value):
    """A numeric hyperparameter's position in [0, 1], or a categorical one's index."""
    if _is_categorical(hp):
        return float(list(hp.values).index(value))
    return float(hp.value_to_prob(value))


def distances(a, b, space):
    """Pairwise distances between coordinate rows `a` (n, d) and `b` (m, d)."""
    categorical = np.array([_is_categorical(hp) for hp in space], dtype=bool)
    numeric = ~categorical
    diff = a[:, None, numeric] - b[None, :, numeric]
    squared = np.einsum("nmd,nmd->nm", diff, diff)
    if categorical.any():
        squared += (a[:, None, categorical] != b[None, :, categorical]).sum(axis=-1)
    return np.sqrt(squared)


def lipschitz_estimate(points, scores, space, alpha):
    """AdaLIPO's `k`: the smallest `(1 + alpha)^i` at least every observed slope."""
    if len(scores) < 2:
        return 0.0
    d = distances(points, points, space)
    gaps = np.abs(scores[:, None] - scores[None, :])
    mask = d > 0
    slope = (gaps[mask] / d[mask]).max() if mask.any() else 0.0
    if slope <= 0:
        return 0.0
    return (1.0 + alpha) ** math.ceil(math.log(slope) / math.log1p(alpha))


def upper_bounds(candidates, points, scores, space, k):
    """The Lipschitz upper bound `min_i f(x_i) + k ||x - x_i||` at each candidate."""
    return (scores[None, :] + k * distances(candidates, points, space)).min(axis=1)
