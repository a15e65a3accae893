"""``demo_data``: an offline, deterministic customer-service dataset (typed message,
voice message and intent per contact) for demos and tests. Not part of
``__default__``; run it with ``kedro run --pipelines demo_data``."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
