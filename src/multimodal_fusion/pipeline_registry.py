"""Project pipelines."""

from __future__ import annotations

import warnings

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

MAIN_PIPELINES = (
    "data_processing",
    "feature_extraction",
    "modeling",
    "evaluation",
    "reporting",
)


def as_stage(pipeline: Pipeline, name: str) -> Pipeline:
    """``pipeline`` with its nodes under the namespace ``name``.

    kedro-viz draws each namespace as a collapsible group, so the five stages
    are the top-level groups (the per-variant namespaces nest inside them:
    ``modeling.text_only``). Dataset and parameter names are unchanged; node
    names gain the prefix (``data_processing.split_contacts``), and
    ``kedro run --namespaces modeling`` runs one stage.

    Kedro warns about dotted dataset names outside a node's top namespace: here
    they are the variants' own namespaced datasets (``text_only.metrics``, made
    by Kedro's namespacing), now inside a stage, so that warning is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "One or more dataset names contain '.'")
        return Pipeline(pipeline, namespace=name, prefix_datasets_with_namespace=False)


def register_pipelines() -> dict[str, Pipeline]:
    """Registers every pipeline; ``__default__`` is the five main ones in a row,
    each under its own namespace (:func:`as_stage`).

    ``demo_data``, ``inference``, ``tuning`` and ``export`` stand apart and
    run only when asked for (``kedro run --pipelines demo_data``): the first
    writes the raw demo dataset and a batch of new demo contacts, the second
    scores new contacts with a model package, the third searches the variants'
    hyperparameters with Optuna, the fourth exports the package's networks to
    LiteRT, ONNX and pruned formats and measures them.
    """
    pipelines = find_pipelines(raise_errors=True)
    # Kedro may load only the pipelines a command asks for: wrap those present.
    for name in MAIN_PIPELINES:
        if name in pipelines:
            pipelines[name] = as_stage(pipelines[name], name)
    pipelines["__default__"] = sum(
        (pipelines[name] for name in MAIN_PIPELINES if name in pipelines),
        Pipeline([]),
    )
    return pipelines
