"""The LIPO global optimizer (dlib's MaxLIPO with trust-region steps) as a KerasTuner `Oracle`."""

import math

import keras_tuner as kt
import numpy as np
from keras_tuner.engine import hyperparameters as hp_module
from keras_tuner.engine.trial import TrialStatus

from kfound.tuning import proposals
from kfound.tuning.trust_region import fit_quadratic, trust_region_step
from kfound.tuning.upper_bound import fit_upper_bound, upper_bounds

_BATCH = 1000  # candidates drawn and scored at once


class LIPOOracle(kt.Oracle):
    """LIPO: Lipschitz global optimization, with local trust-region steps.

    The oracle maximizes `f` (the score, negated when the objective is minimized) as
    dlib's `find_max_global` does ("MaxLIPO+TR", King 2017), alternating two kinds of
    step:

    - **LIPO step** (MaxLIPO with dlib's upper bound). The first point is the centre of
      the space (cumulative probability 0.5 in every coordinate), as in dlib, and the
      second is drawn uniformly. Then, with probability `exploration_probability`, the
      point is drawn uniformly (exploration). Otherwise `max_candidates` uniform
      candidates are scored by dlib's upper bound
      `U(x) = min_i f(x_i) + sqrt(s_i + sum_d m_d (x_d - x_id)^2)`
      (`kfound.tuning.upper_bound`), and the untried one with the largest bound is
      taken. The bound has a squared slope `m_d` per coordinate and a noise term `s_i`
      per trial, the smallest that keep it above every completed trial
      (`relative_noise_magnitude` prices the noise against the slopes). AdaLIPO's bound
      (Malherbe & Vayatis 2017), `min_i f(x_i) + k ||x - x_i||` with one slope `k`,
      becomes vacuous once `f` jumps, since `k` must then cover the jump. On dlib's
      discontinuous "complex Holder table" (`benchmarks/tuning.py`, 300 calls, seeds
      0-29) AdaLIPO's bound reached the optimum on 25 seeds, dlib's on 26, and 29 with
      `trust_region_tolerance` and the centre first as well.
    - **Trust-region step** (after each LIPO step, as in dlib; a LIPO step when it
      cannot be taken). A quadratic is fitted to the best point and its nearest
      neighbours, `(d + 1)(d + 2) / 2` points in all for `d` numeric coordinates, and
      its maximizer within a ball around the best point and within the bounds is
      proposed (`trust_region_step`). The radius is dlib's: derived as 0.95 times the
      distance to the farthest of those neighbours, then halved after a step that
      gained less than a quarter of its prediction and doubled after one that gained
      more than three quarters, and derived afresh when a LIPO step improves on the
      best from outside the ball. The step acts on the numeric coordinates only; the
      categorical ones keep the best trial's values. It is skipped when there are too
      few trials, when the model predicts a gain of at most `trust_region_tolerance`
      times the best score's magnitude, when the proposal was already tried, or while
      another trust-region trial runs (distributed search).

    LIPO finds the region of the global optimum; the trust-region steps converge in it
    quickly, which LIPO alone does slowly.

    Coordinates. Each `Float`, `Int` and ordered (numeric) `Choice` is mapped to
    `[0, 1]` with KerasTuner's `value_to_prob`, so log sampling is respected and
    discrete values sit at the centre of their bucket; a trust-region proposal is
    mapped back with `prob_to_value` (so rounded to a discrete value). An unordered
    `Choice` (strings) or a `Boolean` is a categorical coordinate: it adds 0 to the
    squared distance when two points agree and 1 (the width of a numeric range) when
    they differ. `Fixed` values are ignored. Candidates are drawn uniformly in these
    coordinates, which is KerasTuner's `random_sample` distribution.

    Every decision is made from the completed trials, the record of which trials were
    trust-region steps (saved with the oracle's state) and a generator seeded with
    `(seed, trial number)`, so a resumed search proposes what the uninterrupted one
    would have. Ongoing trials (in a distributed search) do not enter the bound or the
    model; KerasTuner's
    duplicate check keeps them from being proposed twice. When no untried point is
    found among `max_candidates` draws (a small discrete space is exhausted), the
    search stops, as KerasTuner's random search does.

    Args:
        objective: as for `keras_tuner.Oracle`: a metric name or `keras_tuner.Objective`.
        max_trials: the number of trials. Defaults to `10`.
        exploration_probability: `p`, the chance of a uniform draw. Defaults to `0.1`
            (AdaLIPO's setting; dlib's 0.02 reached the Holder table's optimum on 21 of
            those 30 seeds, 0.1 on 26, both before the tolerance and the centre).
        relative_noise_magnitude: the price of the bound's noise terms relative to its
            slopes, dlib's parameter (`kfound.tuning.upper_bound.fit_upper_bound`).
            Defaults to `0.001` (dlib's). Must be > 0.
        trust_region_tolerance: the least gain, relative to the best score's magnitude,
            that the quadratic model must predict for a trust-region step. Defaults to
            `1e-12`: a smaller gain is lost in the rounding of a double (about 16
            digits), and the step would only repeat the best point. (dlib's
            `solver_epsilon` is an absolute gain, 0 by default; near a converged optimum
            that spends every other call on the same point.) Must be >= 0.
        max_candidates: the candidates scored by the upper bound in a LIPO step (and the
            most drawn in search of an untried point). Defaults to `10000`.
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
        trial.status = TrialStatus.COMPLETED
        oracle.end_trial(trial)
    oracle.get_best_trials()[0].hyperparameters.get("x")  # close to 0.3
    ```

    References:
        Malherbe, C. and Vayatis, N. "Global optimization of Lipschitz functions".
        ICML 2017. https://arxiv.org/abs/1703.02628
        King, D. E. "A Global Optimization Algorithm Worth Using". dlib blog, 2017.
        http://blog.dlib.net/2017/12/a-global-optimization-algorithm-worth.html
        (dlib's `find_max_global`, `global_function_search`).
    """

    def __init__(self, objective=None, max_trials=10, exploration_probability=0.1,
                 relative_noise_magnitude=0.001, trust_region_tolerance=1e-12,
                 max_candidates=10000, seed=None, hyperparameters=None, allow_new_entries=True,
                 tune_new_entries=True, max_retries_per_trial=0, max_consecutive_failed_trials=3):
        if not 0.0 <= exploration_probability <= 1.0:
            raise ValueError(
                "Argument `exploration_probability` must be in [0, 1]. "
                f"Received: exploration_probability={exploration_probability}"
            )
        if not relative_noise_magnitude > 0:
            raise ValueError(
                "Argument `relative_noise_magnitude` must be > 0. "
                f"Received: relative_noise_magnitude={relative_noise_magnitude}"
            )
        if not trust_region_tolerance >= 0:
            raise ValueError(
                "Argument `trust_region_tolerance` must be >= 0. "
                f"Received: trust_region_tolerance={trust_region_tolerance}"
            )
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
        self.relative_noise_magnitude = relative_noise_magnitude
        self.trust_region_tolerance = trust_region_tolerance
        self.max_candidates = max_candidates
        self._trust_steps = {}  # trial_id -> the trust-region step that proposed it

    def populate_space(self, trial_id):
        space = proposals.searchable(self.hyperparameters)
        rng = np.random.default_rng([self.seed, len(self.trials)])
        ids, points, scores = self._completed_points(space)
        self._trust_steps.pop(trial_id, None)  # A trial proposed afresh after a kill.
        if self._trust_region_turn(trial_id):
            step = self._trust_region_candidate(space, ids, points, scores)
            if step is not None and not self._duplicate(step[0]):
                self._trust_steps[trial_id] = step[1]
                return {"status": TrialStatus.RUNNING, "values": step[0]}
        if len(scores) == 0:  # dlib's first point: the centre of the space.
            centre = self._values(space, np.full(len(space), 0.5))
            if not self._duplicate(centre):
                return {"status": TrialStatus.RUNNING, "values": centre}
        explore = len(scores) < 2 or rng.random() < self.exploration_probability
        if not explore:
            bound = fit_upper_bound(points, scores, [_is_categorical(hp) for hp in space],
                                    self.relative_noise_magnitude)
        best, best_bound = None, -np.inf
        tried = set()  # Coordinates found to be duplicates (common in a discrete space).
        for _ in range(math.ceil(self.max_candidates / _BATCH)):
            probs, coords = self._sample(space, rng, _BATCH)
            if explore:
                bounds = np.zeros(_BATCH)
            else:
                bounds = upper_bounds(coords, bound)
            # The untried candidate with the largest bound (ties: the first drawn).
            for i in np.argsort(-bounds, kind="stable"):
                if bounds[i] <= best_bound:
                    break
                key = coords[i].tobytes()
                if key in tried:
                    continue
                candidate = self._values(space, probs[i])
                if not self._duplicate(candidate):
                    best, best_bound = candidate, bounds[i]
                    break
                tried.add(key)
            if best is not None and explore:
                break
        if best is None:
            return {"status": TrialStatus.STOPPED, "values": None}
        return {"status": TrialStatus.RUNNING, "values": best}

    def _trust_region_turn(self, trial_id):
        """Whether this trial tries a trust-region step: after each LIPO step, as in dlib.

        Not while another trust-region step is running (in a distributed search).
        """
        earlier = [t for t in self.trials if t != trial_id]
        if not earlier or max(earlier) in self._trust_steps:
            return False
        return not any(t.trial_id in self._trust_steps for t in self.ongoing_trials.values()
                       if t.trial_id != trial_id)

    def _completed_points(self, space):
        """The completed trials: their ids, coordinates, and scores to maximize.

        Trials are taken in trial-id order, so a reloaded oracle sees them in the same order.
        """
        ids, points, scores = [], [], []
        sign = 1.0 if self.objective.direction == "max" else -1.0
        for trial_id, trial in sorted(self.trials.items()):
            if trial.status != TrialStatus.COMPLETED or trial.score is None:
                continue
            ids.append(trial_id)
            points.append(_coordinates(space, trial.hyperparameters.values))
            scores.append(sign * trial.score)
        return (ids, np.asarray(points, dtype="float64").reshape(len(points), len(space)),
                np.asarray(scores, dtype="float64"))

    def _trust_region_radius(self, ids, points, scores):
        """dlib's trust-region radius after the completed trials, replayed in order.

        A trust-region step's radius is halved when the step gained less than a quarter of
        its predicted gain, doubled when more than three quarters; a LIPO step that
        improves on the best from farther than the radius resets it to 0 (to be derived
        afresh from the best point's neighbours).
        """
        radius, best, best_x = 0.0, -np.inf, None
        for trial_id, x, y in zip(ids, points, scores, strict=True):
            step = self._trust_steps.get(trial_id)
            if step is not None:
                rho = (y - step["anchor"]) / abs(step["gain"])
                radius = step["radius"] * (0.5 if rho < 0.25 else 2.0 if rho > 0.75 else 1.0)
            if y > best:
                if step is None and best_x is not None and (
                        np.linalg.norm(x - best_x) > radius * 1.001):
                    radius = 0.0
                best, best_x = y, x
        return radius

    def _trust_region_candidate(self, space, ids, points, scores):
        """The trust-region step from the best trial, or `None` when there is none to take.

        A quadratic is fitted to the best point and its nearest neighbours, enough of them
        to determine it, in the numeric coordinates; its maximizer within a ball around the
        best point and within `[0, 1]` is proposed, the categorical coordinates kept at
        the best trial's values. The ball's radius is dlib's (`_trust_region_radius`);
        when that is 0, 0.95 times the distance to the farthest of those neighbours.

        Returns:
            `(values, step)`, `step` the record `_trust_region_radius` replays: the best
            score, the predicted gain and the radius.
        """
        numeric = np.array([not _is_categorical(hp) for hp in space], dtype=bool)
        dims = int(numeric.sum())
        needed = (dims + 1) * (dims + 2) // 2
        if dims == 0 or len(scores) < needed:
            return None
        best = int(np.argmax(scores))
        near = np.argsort(distances(points[best:best + 1], points, space)[0], kind="stable")
        near = near[:needed]
        anchor = points[best, numeric]
        offsets = points[near][:, numeric] - anchor
        radius = min(self._trust_region_radius(ids, points[:, numeric], scores), math.sqrt(dims))
        if radius == 0:
            radius = 0.95 * np.sqrt((offsets**2).sum(axis=1)).max()
        if radius == 0:
            return None
        hessian, gradient, _ = fit_quadratic(offsets, scores[near])
        step, gain = trust_region_step(hessian, gradient, radius, -anchor, 1.0 - anchor)
        if not gain > self.trust_region_tolerance * abs(scores[best]):
            return None
        coords = points[best].copy()
        coords[numeric] = anchor + step
        probs = coords.copy()
        for j, hp in enumerate(space):
            if _is_categorical(hp):
                probs[j] = (coords[j] + 0.5) / len(hp.values)
        record = {"anchor": float(scores[best]), "gain": float(gain), "radius": float(radius)}
        return self._values(space, probs), record

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
        if any(hp.conditions for hp in space):
            self._place_inactive(space, probs, coords)
        return probs, coords

    def _place_inactive(self, space, probs, coords):
        """Moves each candidate's inactive coordinates to their default, in place.

        An inactive hyperparameter sits where a completed trial's does (`_coordinates`).
        Activity is decided per hyperparameter, in the space's order, from the values
        of the parents its conditions name (which are earlier in the space).
        """
        n = len(probs)
        parents = {c.name for hp in space for c in hp.conditions}
        column = {id(hp): j for j, hp in enumerate(space)}
        value_of, active_of = {}, {}  # parent name -> candidates' values, activity
        for hp in self.hyperparameters.space:
            active = np.ones(n, dtype=bool)
            for condition in hp.conditions:
                values = value_of.get(condition.name, [None] * n)
                active &= active_of.get(condition.name, np.zeros(n, dtype=bool))
                active &= np.array([v in condition.values for v in values], dtype=bool)
            j = column.get(id(hp))
            if j is not None:
                coords[~active, j] = _coordinate(hp, hp.default)
            if hp.name in parents:
                values = ([hp.value] * n if j is None
                          else [proposals.value_at(hp, p) for p in probs[:, j]])
                old = value_of.get(hp.name, [None] * n)
                value_of[hp.name] = [v if a else o
                                     for v, o, a in zip(values, old, active, strict=True)]
                active_of[hp.name] = active_of.get(hp.name, np.zeros(n, dtype=bool)) | active

    def _values(self, space, probs):
        """The hyperparameter values at cumulative probabilities `probs` (active ones only).

        Each coordinate belongs to one hyperparameter of `space`, not to a name
        (`kfound.tuning.proposals`).
        """
        prob_of = {id(hp): p for hp, p in zip(space, probs, strict=True)}
        return proposals.propose(self.hyperparameters,
                                 lambda hp: proposals.value_at(hp, prob_of[id(hp)]))

    def get_state(self):
        state = super().get_state()
        state.update({
            "exploration_probability": self.exploration_probability,
            "relative_noise_magnitude": self.relative_noise_magnitude,
            "trust_region_tolerance": self.trust_region_tolerance,
            "max_candidates": self.max_candidates,
            "trust_steps": self._trust_steps,
        })
        return state

    def set_state(self, state):
        super().set_state(state)
        self.exploration_probability = state["exploration_probability"]
        # A state saved before these two were arguments keeps the constructor's values.
        self.relative_noise_magnitude = state.get("relative_noise_magnitude",
                                                  self.relative_noise_magnitude)
        self.trust_region_tolerance = state.get("trust_region_tolerance",
                                                self.trust_region_tolerance)
        self.max_candidates = state["max_candidates"]
        self._trust_steps = dict(state.get("trust_steps", {}))


class LIPOSearch(kt.Tuner):
    """A `keras_tuner.Tuner` driven by `LIPOOracle`.

    Args:
        hypermodel: a `keras_tuner.HyperModel` or a `build(hp)` function.
        objective, max_trials, exploration_probability, relative_noise_magnitude,
        trust_region_tolerance, max_candidates, seed, hyperparameters, tune_new_entries,
        allow_new_entries, max_retries_per_trial, max_consecutive_failed_trials: as for
        `LIPOOracle`.
        **kwargs: as for `keras_tuner.Tuner` (`directory`, `project_name`, ...).

    Example:

    ```python
    tuner = LIPOSearch(build_model, objective="val_accuracy", max_trials=20)
    tuner.search(x, y, validation_data=(x_val, y_val), epochs=5)
    ```
    """

    def __init__(self, hypermodel=None, objective=None, max_trials=10,
                 exploration_probability=0.1, relative_noise_magnitude=0.001,
                 trust_region_tolerance=1e-12, max_candidates=10000, seed=None,
                 hyperparameters=None, tune_new_entries=True, allow_new_entries=True,
                 max_retries_per_trial=0, max_consecutive_failed_trials=3, **kwargs):
        oracle = LIPOOracle(
            objective=objective, max_trials=max_trials,
            exploration_probability=exploration_probability,
            relative_noise_magnitude=relative_noise_magnitude,
            trust_region_tolerance=trust_region_tolerance, max_candidates=max_candidates,
            seed=seed, hyperparameters=hyperparameters,
            tune_new_entries=tune_new_entries, allow_new_entries=allow_new_entries,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        super().__init__(oracle, hypermodel, **kwargs)


def _is_categorical(hp):
    return isinstance(hp, hp_module.Boolean) or (
        isinstance(hp, hp_module.Choice) and not hp.ordered
    )


def _coordinates(space, values):
    """A trial's coordinates: each active hyperparameter's, and its default's when inactive.

    Activity is decided per hyperparameter (`proposals.is_active`).
    """
    return [_coordinate(hp, values[hp.name] if proposals.is_active(hp, values) else hp.default)
            for hp in space]


def _coordinate(hp, value):
    """A numeric hyperparameter's position in [0, 1], or a categorical one's bucket index.

    The bucket index is where `prob_to_value` draws `value` from (for a `Boolean`, whose
    `values` are `(True, False)`, that is 1 for `True`).
    """
    if _is_categorical(hp):
        return float(math.floor(hp.value_to_prob(value) * len(hp.values)))
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
