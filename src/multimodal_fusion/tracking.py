"""What a tracked run logs to MLflow, as plain functions (no MLflow import):
the parameters it read and its headline metrics. The hook that logs them is
:class:`multimodal_fusion.mlflow_hook.RunTracking`, active when kedro-mlflow is
installed (the ``tracking`` extra)."""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Iterable
from typing import Any

from multimodal_fusion.evaluation import trained_variants
from multimodal_fusion.parameters import without_anchors

PARAMS_PREFIX = "params:"


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    flat = {}
    for key, item in value.items():
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def run_parameters(
    parameters: dict[str, Any], datasets: Iterable[str]
) -> dict[str, Any]:
    """The parameters a pipeline's nodes read (its ``params:<key>`` inputs),
    flattened with dots (``modeling.augmentation.copies``), without YAML anchors
    (keys starting with ``_``, such as ``_network``: templates, not settings).

    The whole ``parameters`` dict, which the report prints, selects nothing more:
    it would add every environment's unused settings (``demo_data``, ...).

    Args:
        parameters: Every parameter of the run (the catalog's ``parameters``).
        datasets: The pipeline's dataset names.
    """
    flat = {}
    for name in datasets:
        key = name.removeprefix(PARAMS_PREFIX)
        if key == name or any(part.startswith("_") for part in key.split(".")):
            continue
        value = parameters
        for part in key.split("."):
            value = value[part]
        flat.update(_flatten(without_anchors(value), key))
    return dict(sorted(flat.items()))


def headline_metrics(
    metrics: dict[str, Any],
) -> tuple[dict[str, float], dict[str, str]]:
    """The numbers and verdict of a run's ``metrics`` to compare runs by.

    Returns:
        Metrics: ``macro_f1/<variant>``, ``accuracy/<variant>`` and the bounds
        of ``macro_f1_ci/<variant>`` (``_low``, ``_high``) for every trained
        variant, ``fusion_gain/macro_f1`` and its interval
        (``fusion_gain/ci_low``, ``fusion_gain/ci_high``), when there is one;
        with several seeds, ``macro_f1_seed_mean/<variant>``,
        ``macro_f1_seed_std/<variant>`` and ``fusion_gain/seed_mean``,
        ``fusion_gain/seed_std``.
        Tags: ``best_model``, ``best_unimodal``, ``best_fusion`` and
        ``fusion_gain_significant``, when set.
    """
    values: dict[str, float] = {}
    for name, entry in trained_variants(metrics).items():
        values[f"macro_f1/{name}"] = float(entry["macro_f1"])
        values[f"accuracy/{name}"] = float(entry["accuracy"])
        if entry.get("macro_f1_ci"):
            low, high = entry["macro_f1_ci"]
            values[f"macro_f1_ci/{name}_low"] = float(low)
            values[f"macro_f1_ci/{name}_high"] = float(high)
        spread = entry.get("seed_spread") or {}
        if spread.get("std") is not None:
            values[f"macro_f1_seed_mean/{name}"] = float(spread["mean"])
            values[f"macro_f1_seed_std/{name}"] = float(spread["std"])
    if metrics.get("fusion_gain_macro_f1") is not None:
        values["fusion_gain/macro_f1"] = float(metrics["fusion_gain_macro_f1"])
    if metrics.get("fusion_gain_ci"):
        low, high = metrics["fusion_gain_ci"]
        values["fusion_gain/ci_low"] = float(low)
        values["fusion_gain/ci_high"] = float(high)
    if metrics.get("fusion_gain_seeds"):
        values["fusion_gain/seed_mean"] = float(metrics["fusion_gain_seeds"]["mean"])
        values["fusion_gain/seed_std"] = float(metrics["fusion_gain_seeds"]["std"])
    tags = {
        key: str(metrics[key])
        for key in (
            "best_model",
            "best_unimodal",
            "best_fusion",
            "fusion_gain_significant",
        )
        if metrics.get(key) is not None
    }
    return values, tags


def tracking_hooks() -> tuple[Any, ...]:
    """The project's tracking hook when kedro-mlflow is installed, else none."""
    if importlib.util.find_spec("kedro_mlflow") is None:
        return ()
    # kedro-mlflow's pipeline model (not used here) has an untyped `predict`, which
    # MLflow warns about on import, on the console of every run, through a filter
    # of its own that a warning filter cannot override: drop that one warning.
    with warnings.catch_warnings(record=True) as caught:
        from multimodal_fusion.mlflow_hook import RunTracking
    for warning in caught:
        if "type hints to the `predict` method" not in str(warning.message):
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return (RunTracking(),)
