"""The HTTP prediction service: one model package behind FastAPI + uvicorn.

``python -m multimodal_fusion serve --package <folder>`` starts it (see
:mod:`multimodal_fusion.serving.cli` and the README, "Serve the model"):

- :mod:`~multimodal_fusion.serving.app`: the app factory and its endpoints;
- :mod:`~multimodal_fusion.serving.guards`: authentication, limits, access log;
- :mod:`~multimodal_fusion.serving.metrics`: Prometheus metrics;
- :mod:`~multimodal_fusion.serving.settings`: settings, tokens, exposure check.
"""

from multimodal_fusion.serving.app import create_app
from multimodal_fusion.serving.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
