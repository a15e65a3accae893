"""The HTTP prediction service: one model package behind FastAPI + uvicorn.

``python -m multimodal_fusion serve --package <folder>`` starts it
(docs/using-a-model.md, "Serve the model");
``multimodal_fusion.serving.app.create_app(package, settings)`` builds the app.

- :mod:`~multimodal_fusion.serving.app`: the app factory and its endpoints;
- :mod:`~multimodal_fusion.serving.guards`: authentication, limits, access log;
- :mod:`~multimodal_fusion.serving.metrics`: Prometheus metrics;
- :mod:`~multimodal_fusion.serving.settings`: settings, tokens, exposure check;
- :mod:`~multimodal_fusion.serving.cli`: the ``serve`` command.

Nothing is imported here, so the command checks its settings before it loads
TensorFlow.
"""
