"""Hyperparameter search with Optuna: one study per model variant over its main
hyperparameters (``tuning.search_space``), each trial trained by the modeling
pipeline's training function and scored by validation macro-F1. The best values
come out as the YAML a user copies into ``conf/<env>/``, with a plot of their
importances. Optuna is imported lazily: the pipeline registry loads this module
in every Kedro command.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from multimodal_fusion.errors import UserInputError
from multimodal_fusion.training import train_classifier

logger = logging.getLogger(__name__)

PARAMETERS_FILE = "conf/base/parameters_tuning.yml"
# The per-epoch metric that pruning watches: it rises like the objective.
PRUNING_MONITOR = "val_accuracy"


def _check_spec(name: str, spec: Any) -> dict[str, Any]:
    if isinstance(spec, dict) and (
        (set(spec) == {"choices"} and isinstance(spec["choices"], list))
        or ({"low", "high"} <= set(spec) <= {"low", "high", "log", "step"})
    ):
        return spec
    raise UserInputError(
        f"tuning.search_space.{name} ({PARAMETERS_FILE}) is {spec!r}: give "
        "{choices: [...]} or {low: ..., high: ...} (optionally log: true, step: ...)."
    )


def _is_integer_range(spec: dict[str, Any]) -> bool:
    return "low" in spec and all(
        isinstance(spec.get(key, 1), int) and not isinstance(spec.get(key), bool)
        for key in ("low", "high", "step")
    )


def _contains(spec: dict[str, Any], value: Any) -> bool:
    if "choices" in spec:
        return value in spec["choices"]
    if not isinstance(value, int | float) or not spec["low"] <= value <= spec["high"]:
        return False
    step = spec.get("step")
    steps = (value - spec["low"]) / step if step else 0
    return abs(steps - round(steps)) < 1e-9


def variant_search_space(
    variant: str, params: dict[str, Any], search_space: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The part of ``search_space`` that applies to a variant, checked.

    A hyperparameter applies when the variant's parameters have it;
    ``modality_dropout`` only when one network fuses several modalities (it
    would blank a unimodal network's only input).

    Raises:
        UserInputError: A malformed entry, or a current value outside its range.
    """
    fuses = params.get("fusion") != "late" and len(params.get("modalities", [])) > 1
    space = {}
    for name, given in search_space.items():
        spec = _check_spec(name, given)
        if name not in params or (name == "modality_dropout" and not fuses):
            continue
        if not _contains(spec, params[name]):
            raise UserInputError(
                f"{variant}'s {name} is {params[name]!r}, outside "
                f"tuning.search_space.{name} = {spec} ({PARAMETERS_FILE}): widen the "
                "range so that trial 0 can train the current parameters."
            )
        space[name] = spec
    return space


def _suggest(trial, name: str, spec: dict[str, Any]) -> Any:
    if "choices" in spec:
        return trial.suggest_categorical(name, spec["choices"])
    suggest = trial.suggest_int if _is_integer_range(spec) else trial.suggest_float
    return suggest(
        name,
        spec["low"],
        spec["high"],
        log=spec.get("log", False),
        **({"step": spec["step"]} if "step" in spec else {}),
    )


def _pruning_callback(trial):
    """Optuna's Keras pruning callback, counting epochs across every network a
    trial trains (late fusion trains one per modality), so no step repeats."""
    from optuna_integration import KerasPruningCallback

    class EpochPruning(KerasPruningCallback):
        def __init__(self):
            super().__init__(trial, PRUNING_MONITOR)
            self.step = -1

        def on_epoch_end(self, epoch, logs=None):
            self.step += 1
            super().on_epoch_end(self.step, logs)

    return EpochPruning()


def _retracing_warning(record: logging.LogRecord) -> bool:
    return "triggered tf.function retracing" not in record.getMessage()


def _route_optuna_logs() -> None:
    """Optuna logs through ``logging`` at WARNING from now on, not on its own
    stderr handler: :func:`tune_variant` logs one line per trial, and the
    study's creation and the StudyDataset's saves would print more."""
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@contextmanager
def _no_retracing_warning() -> Iterator[None]:
    """Drops TensorFlow's retracing warning while trials run: every trial
    builds a new network on purpose."""
    tensorflow_logger = logging.getLogger("tensorflow")
    tensorflow_logger.addFilter(_retracing_warning)
    try:
        yield
    finally:
        tensorflow_logger.removeFilter(_retracing_warning)


def _log_trial(variant: str, n_trials: int | None):
    from optuna.trial import TrialState

    def log(study, trial) -> None:
        of = f"/{n_trials}" if n_trials else ""
        if trial.state == TrialState.COMPLETE:
            outcome = (
                f"validation macro-F1 {trial.value:.3f} (best {study.best_value:.3f})"
            )
        elif trial.state == TrialState.PRUNED:
            outcome = f"pruned after {trial.last_step + 1} epochs"
        else:
            outcome = trial.state.name.lower()
        logger.info(
            "%s: trial %d%s, %s, %.0f s",
            variant,
            trial.number,
            of,
            outcome,
            trial.duration.total_seconds(),
        )

    return log


def tune_variant(
    model_inputs: dict[str, Any],
    params: dict[str, Any],
    tuning: dict[str, Any],
    seed: int,
    *,
    variant: str,
):
    """Searches a variant's hyperparameters with Optuna on the validation split.

    Each trial trains the variant with the modeling pipeline's training
    (:func:`~multimodal_fusion.training.train_classifier`), its parameters
    overridden by the trial's values, and scores validation macro-F1. Trial 0
    trains the current parameters. The TPE sampler is seeded with ``seed`` and
    trials run one at a time, so a study that ends on ``n_trials`` is the same
    on every run.

    Args:
        model_inputs: Splits of the variant's inputs (features or common space).
        params: The variant's ``model`` parameters.
        tuning: ``n_trials``, ``timeout_s``, ``pruner`` (MedianPruner arguments or
            None) and ``search_space`` (see ``parameters_tuning.yml``).
        seed: The project seed.
        variant: The variant's name.

    Returns:
        The study (in memory); its user attributes hold ``variant``, the
        ``search_space`` used and, when the variant cannot train on this data,
        ``skipped_reason``.
    """
    import optuna

    space = variant_search_space(variant, params, tuning["search_space"])
    n_trials, timeout = tuning.get("n_trials"), tuning.get("timeout_s")
    if not n_trials and not timeout:
        raise UserInputError(
            f"tuning.n_trials and tuning.timeout_s are both empty ({PARAMETERS_FILE}):"
            " give a budget."
        )
    pruner = tuning.get("pruner")
    _route_optuna_logs()
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(**pruner)
        if pruner
        else optuna.pruners.NopPruner(),
    )
    study.set_user_attr("variant", variant)
    study.set_user_attr("search_space", space)
    study.enqueue_trial({name: params[name] for name in space})

    def objective(trial) -> float:
        import keras

        values = {name: _suggest(trial, name, spec) for name, spec in space.items()}
        try:
            model = train_classifier(
                model_inputs,
                {**params, **values},
                seed,
                callbacks=[_pruning_callback(trial)],
            )
        finally:
            keras.utils.clear_session(free_memory=True)
        if model.skipped_reason_:
            study.set_user_attr("skipped_reason", model.skipped_reason_)
            study.stop()
            return float("nan")  # a failed trial: nothing to compare
        if model.val_macro_f1_ is None:
            raise UserInputError(
                f"{variant} cannot be tuned: the validation split has no rows of "
                "the training classes. Give the val split labelled rows "
                "(data_processing.val_size, or a split column)."
            )
        trial.set_user_attr("epochs", model.epochs_)
        return model.val_macro_f1_

    start = time.perf_counter()
    with _no_retracing_warning():
        study.optimize(
            objective,
            n_trials=n_trials,
            timeout=timeout,
            callbacks=[_log_trial(variant, n_trials)],
            gc_after_trial=True,
        )
    if "skipped_reason" in study.user_attrs:
        logger.warning("%s not tuned: %s", variant, study.user_attrs["skipped_reason"])
    else:
        logger.info(
            "%s: %d trials in %.0f s, validation macro-F1 %.3f (current parameters "
            "%.3f); best values in %s_tuned_parameters",
            variant,
            len(study.trials),
            time.perf_counter() - start,
            study.best_value,
            study.trials[0].value,
            variant,
        )
    return study


def _finished(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def tuned_parameters(study) -> dict[str, Any]:
    """The best trial's values in the shape of ``parameters_modeling.yml``:
    ``{<variant>: {model: {...}}}``, after a ``_tuned`` note saying where they
    come from (a parameter no node reads, like the ``_network`` anchor of
    ``parameters_modeling.yml``; Kedro lets several files share such a key).

    Copied into ``conf/<env>/parameters_modeling.yml`` (or any
    ``conf/<env>/parameters*.yml``), they override the variant's base values and
    keep the others.
    """
    variant = study.user_attrs["variant"]
    trials = study.trials
    if not _finished(study):
        reason = study.user_attrs.get("skipped_reason", "no trial finished")
        return {"_tuned": f"{variant} was not tuned: {reason}."}
    best, defaults = study.best_trial, trials[0]
    untuned = (
        f"{defaults.value:.4f} with the current parameters (trial 0)"
        if defaults.value is not None
        else f"trial 0 (current parameters) {defaults.state.name.lower()}"
    )
    note = (
        f"kedro run --pipelines tuning: study {variant}, trial {best.number} of "
        f"{len(trials)} - validation macro-F1 {best.value:.4f} with these values, "
        f"{untuned}. Copy this file to conf/<env>/parameters_modeling.yml (or add "
        "its keys there): the variant then trains with these values, its other "
        "parameters unchanged."
    )
    return {"_tuned": note, variant: {"model": dict(best.params)}}


def importance_plot(study):
    """A bar chart of each hyperparameter's importance for validation macro-F1
    over the finished trials (Optuna's default PED-ANOVA evaluator), or a
    figure that says why there is none."""
    import optuna
    import plotly.graph_objects as go

    variant = study.user_attrs["variant"]
    finished = _finished(study)
    title = (
        f"{variant}: hyperparameter importance for validation macro-F1 "
        f"({len(finished)} finished trials of {len(study.trials)})"
    )
    varied = {
        name
        for name in study.user_attrs["search_space"]
        if len({repr(t.params.get(name)) for t in finished}) > 1
    }
    if len(finished) < 2 or not varied:
        figure = go.Figure()
        figure.add_annotation(
            text="Importances need at least two finished trials with different "
            "values: give tuning.n_trials or timeout_s more budget.",
            showarrow=False,
        )
    else:
        figure = optuna.visualization.plot_param_importances(
            study, params=sorted(varied)
        )
    figure.update_layout(title=title)
    return figure
