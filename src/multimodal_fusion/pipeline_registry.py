"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

MAIN_PIPELINES = (
    "data_processing",
    "feature_extraction",
    "modeling",
    "evaluation",
    "reporting",
)


def register_pipelines() -> dict[str, Pipeline]:
    """Registers every pipeline; ``__default__`` is the five main ones in a row.

    ``demo_data``, ``inference`` and ``tuning`` stand apart and run only when
    asked for (``kedro run --pipelines demo_data``): the first writes the raw
    demo dataset and a batch of new demo contacts, the second scores new
    contacts with a model package, the third searches the variants'
    hyperparameters with Optuna.
    """
    pipelines = find_pipelines(raise_errors=True)
    # Kedro may load only the pipelines a command asks for: sum those present.
    pipelines["__default__"] = sum(
        (pipelines[name] for name in MAIN_PIPELINES if name in pipelines),
        Pipeline([]),
    )
    return pipelines
