"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

MAIN_PIPELINES = ("data_processing", "feature_extraction", "modeling", "reporting")


def register_pipelines() -> dict[str, Pipeline]:
    """Registers every pipeline; ``__default__`` is the four main ones in a row.

    ``demo_data`` stands apart: it writes the raw demo dataset and runs only when
    asked for (``kedro run --pipeline demo_data``).
    """
    pipelines = find_pipelines(raise_errors=True)
    # Kedro may load only the pipelines a command asks for: sum those present.
    pipelines["__default__"] = sum(
        (pipelines[name] for name in MAIN_PIPELINES if name in pipelines),
        Pipeline([]),
    )
    return pipelines
