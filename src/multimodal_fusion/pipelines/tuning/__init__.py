"""Hyperparameter search over the model variants (Optuna), run only when asked:
``kedro run --pipelines tuning``."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
