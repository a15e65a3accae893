"""The service's Prometheus metrics (one registry per app)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    """Requests by path and status, latency, predictions by label, the
    modalities contacts arrived with, rejections by reason, requests in flight,
    contacts per model call."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mf_requests",
            "HTTP requests by path and status code",
            ["path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mf_request_duration_seconds",
            "Time from request to response, by path",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "mf_predictions",
            "Predicted contacts by label",
            ["label"],
            registry=self.registry,
        )
        self.modalities = Counter(
            "mf_contact_modalities",
            "Contacts by the modalities they were predicted from (none: rejected)",
            ["modalities"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "mf_rejected_inputs",
            "Rejected contacts and inputs by reason",
            ["reason"],
            registry=self.registry,
        )
        self.model_batch = Histogram(
            "mf_model_batch_contacts",
            "Contacts predicted together in one model call (micro-batching)",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "mf_predict_requests_in_flight",
            "Prediction requests running or waiting for the model",
            registry=self.registry,
        )

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(path=path, status=str(status)).inc()
        self.latency.labels(path=path).observe(seconds)

    def observe_results(self, results: Iterable[dict]) -> None:
        """Counts predicted labels, modalities and rejection reasons."""
        for result in results:
            if result["status"] == "predicted":
                self.predictions.labels(label=result["label"]).inc()
                self.modalities.labels(modalities=result["modalities"]).inc()
            else:
                self.modalities.labels(modalities="none").inc()
                self.rejections.labels(reason=result["reason"]).inc()
            for reason in result["rejected_inputs"].values():
                self.rejections.labels(reason=reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
