"""Optuna's TPE sampler as a KerasTuner `Oracle`, through Optuna's ask-and-tell interface."""

import keras_tuner as kt
import numpy as np
from keras_tuner.engine import hyperparameters as hp_module
from keras_tuner.engine.trial import TrialStatus

from kfound.tuning import proposals

EXTRA = "kfound[tpe]"


def _import_optuna():
    try:
        import optuna
    except ImportError as error:
        raise ImportError(
            "The TPE oracle (--tuner tpe) needs Optuna, an optional dependency: "
            f"pip install '{EXTRA}' (or pip install optuna)."
        ) from error
    return optuna


class TPEOracle(kt.Oracle):
    """Tree-structured Parzen Estimator proposals from Optuna's `TPESampler`.

    Each proposal is one `study.ask()` on an in-memory Optuna study that holds every
    completed trial (`study.add_trial`), with a sampler seeded by `(seed, trial
    number)`: the study is rebuilt from the oracle's trials at each proposal, so a search
    resumed after a kill proposes what the uninterrupted one would have, and in a
    distributed search the chief's oracle proposes for every worker. Ongoing trials
    are not in the study; KerasTuner's duplicate check keeps them from being proposed
    twice (up to `max_collisions` asks; then the search stops, as random search does).

    Hyperparameters map onto Optuna's distributions: `Float` and `Int` (linear or log
    sampling, with their step) onto `FloatDistribution` and `IntDistribution`, `Choice`
    and `Boolean` onto `CategoricalDistribution`. Those Optuna cannot express (reverse-log
    sampling, a step under log sampling or one that does not divide the range) are
    asked as their cumulative probability
    in `[0, 1]` and mapped with KerasTuner's `prob_to_value`. Conditional
    hyperparameters are asked only when active (Optuna's define-by-run spaces); two
    that share a name get their own Optuna parameters.

    Args:
        objective: as for `keras_tuner.Oracle`: a metric name or `keras_tuner.Objective`.
        max_trials: the number of trials. Defaults to `10`.
        n_startup_trials: trials drawn at random before TPE models the others, as for
            `optuna.samplers.TPESampler`. Defaults to `10`.
        max_collisions: the most duplicate proposals in a row before the search stops.
            Defaults to `20`.
        seed: the random seed.
        hyperparameters, allow_new_entries, tune_new_entries, max_retries_per_trial,
        max_consecutive_failed_trials: as for `keras_tuner.Oracle`.

    Example:

    ```python
    hp = kt.HyperParameters()
    hp.Float("x", -1.0, 1.0)
    oracle = TPEOracle(kt.Objective("f", "min"), max_trials=30, hyperparameters=hp, seed=1)
    ```

    Reference:
        Bergstra, J., Bardenet, R., Bengio, Y. and Kegl, B. "Algorithms for
        Hyper-Parameter Optimization". NeurIPS 2011.
        Akiba, T. et al. "Optuna: A Next-generation Hyperparameter Optimization
        Framework". KDD 2019. https://optuna.org
    """

    def __init__(self, objective=None, max_trials=10, n_startup_trials=10, max_collisions=20,
                 seed=None, hyperparameters=None, allow_new_entries=True, tune_new_entries=True,
                 max_retries_per_trial=0, max_consecutive_failed_trials=3):
        self._optuna = _import_optuna()
        for name, value in (("n_startup_trials", n_startup_trials),
                            ("max_collisions", max_collisions)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"Argument `{name}` must be an integer >= 1. Received: {name}={value!r}")
        super().__init__(
            objective=objective, max_trials=max_trials, hyperparameters=hyperparameters,
            allow_new_entries=allow_new_entries, tune_new_entries=tune_new_entries, seed=seed,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        self.n_startup_trials = n_startup_trials
        self.max_collisions = max_collisions

    def populate_space(self, trial_id):
        optuna = self._optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        space = proposals.searchable(self.hyperparameters)
        keys = _parameter_keys(space)
        seed = int(np.random.SeedSequence([self.seed or 0, len(self.trials)]).generate_state(1)[0])
        sampler = optuna.samplers.TPESampler(n_startup_trials=self.n_startup_trials, seed=seed)
        direction = "maximize" if self.objective.direction == "max" else "minimize"
        study = optuna.create_study(direction=direction, sampler=sampler)
        for _, trial in sorted(self.trials.items()):
            if trial.status == TrialStatus.COMPLETED and trial.score is not None:
                params, distributions = self._parameters(space, keys, trial.hyperparameters.values)
                study.add_trial(optuna.trial.create_trial(
                    params=params, distributions=distributions, value=float(trial.score)))
        for _ in range(self.max_collisions):
            asked = study.ask()
            values = self._ask(space, keys, asked)
            if not self._duplicate(values):
                return {"status": TrialStatus.RUNNING, "values": values}
            # Told as failed, so that the next ask is a fresh draw, not the same one.
            study.tell(asked, state=optuna.trial.TrialState.FAIL)
        return {"status": TrialStatus.STOPPED, "values": None}

    def _ask(self, space, keys, asked):
        """The hyperparameter values of Optuna trial `asked` (active ones only)."""
        key_of = {id(hp): key for hp, key in zip(space, keys, strict=True)}

        def value_of(hp):
            value = _suggest(asked, key_of[id(hp)], self._distribution(hp))
            return proposals.value_at(hp, value) if _by_probability(hp) else value

        return proposals.propose(self.hyperparameters, value_of)

    def _parameters(self, space, keys, values):
        """A completed trial's Optuna parameters and distributions (active ones only)."""
        params, distributions = {}, {}
        for hp, key in zip(space, keys, strict=True):
            if not proposals.is_active(hp, values):
                continue
            value = values[hp.name]
            params[key] = float(hp.value_to_prob(value)) if _by_probability(hp) else value
            distributions[key] = self._distribution(hp)
        return params, distributions

    def _distribution(self, hp):
        distributions = self._optuna.distributions
        if isinstance(hp, hp_module.Boolean):
            return distributions.CategoricalDistribution([False, True])
        if isinstance(hp, hp_module.Choice):
            return distributions.CategoricalDistribution(list(hp.values))
        if _by_probability(hp):
            return distributions.FloatDistribution(0.0, 1.0)
        log = hp.sampling == "log"
        if isinstance(hp, hp_module.Int):
            return distributions.IntDistribution(hp.min_value, hp.max_value, log=log,
                                                 step=hp.step or 1)
        return distributions.FloatDistribution(hp.min_value, hp.max_value, log=log,
                                               step=hp.step)

    def get_state(self):
        state = super().get_state()
        state.update({"n_startup_trials": self.n_startup_trials,
                      "max_collisions": self.max_collisions})
        return state

    def set_state(self, state):
        super().set_state(state)
        self.n_startup_trials = state["n_startup_trials"]
        self.max_collisions = state["max_collisions"]


def _suggest(asked, key, distribution):
    """`asked.suggest_*` for `distribution`, Optuna's public ask-and-tell calls."""
    import optuna.distributions as d

    if isinstance(distribution, d.CategoricalDistribution):
        return asked.suggest_categorical(key, distribution.choices)
    if isinstance(distribution, d.IntDistribution):
        return asked.suggest_int(key, distribution.low, distribution.high,
                                 step=distribution.step, log=distribution.log)
    return asked.suggest_float(key, distribution.low, distribution.high,
                               step=distribution.step, log=distribution.log)


def _by_probability(hp):
    """Whether `hp` is asked as its cumulative probability: Optuna has no distribution
    for reverse-log sampling, for a step under log sampling, or for a step that does
    not divide the range."""
    if isinstance(hp, (hp_module.Boolean, hp_module.Choice)):
        return False
    if hp.sampling == "reverse_log":
        return True
    step = hp.step if isinstance(hp, hp_module.Float) else (hp.step or 1)
    if step is None or (isinstance(hp, hp_module.Int) and step == 1):
        return False
    if hp.sampling == "log":
        return True
    return not float((hp.max_value - hp.min_value) / step).is_integer()


def _parameter_keys(space):
    """Optuna parameter names: the hyperparameter's, or `name[i]` when names repeat."""
    names = [hp.name for hp in space]
    return [name if names.count(name) == 1 else f"{name}[{i}]"
            for i, name in enumerate(names)]
