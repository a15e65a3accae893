"""The FastAPI app: one model package behind ``/v1/predict`` and
``/v1/predict/batch``, with health, readiness, metrics and OpenAPI docs.

Predictions go through :meth:`ModelPackage.predict` (the same validation,
preparation and featurisation as training) on one model thread, which predicts
the requests waiting for it together (:class:`Predictor`).
"""

from __future__ import annotations

import base64
import binascii
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field, PlainValidator, WithJsonSchema
from starlette.exceptions import HTTPException

from multimodal_fusion.datasets import AudioClip
from multimodal_fusion.package import ModelPackage, result_of
from multimodal_fusion.serving.guards import (
    GuardMiddleware,
    ServiceError,
    error_response,
)
from multimodal_fusion.serving.metrics import ServiceMetrics
from multimodal_fusion.serving.settings import ServeSettings

LOGGER = logging.getLogger(__name__)
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
JSON_TYPES = ("application/json",)


@dataclass
class _Job:
    """One request's contacts waiting for the model, and where its results go."""

    texts: list[str | None]
    audio: list[bytes | None]
    done: Future = field(default_factory=Future)


class Predictor:
    """Predicts contacts through the package in micro-batches, and says when
    it is warm.

    One thread runs the model. Requests that arrive while it is busy wait in a
    queue and are predicted together in its next call, up to ``max_batch``
    contacts (more when one request brings more): concurrent clients share the
    per-call cost of validation, featurisation and the forward pass instead of
    queueing behind a lock. Every contact's features are its own, so its
    prediction is the one :meth:`ModelPackage.predict` gives it alone (tested).
    """

    def __init__(
        self,
        package: ModelPackage,
        settings: ServeSettings,
        on_batch: Callable[[int], Any] = lambda contacts: None,
    ) -> None:
        self.package, self.settings, self.on_batch = package, settings, on_batch
        self.ready = threading.Event()
        self.warm_up_error: str | None = None
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        threading.Thread(target=self._serve, daemon=True, name="model").start()

    def predict(
        self, texts: Sequence[str | None], audio: Sequence[bytes | None]
    ) -> list[dict[str, Any]]:
        """:func:`result_of` each contact's :meth:`ModelPackage.predict` row.

        Raises:
            ServiceError: 503 when the model has not answered within the
                timeout (it stays queued and is predicted, unanswered).
        """
        try:
            return self._submit(texts, audio).result(
                timeout=self.settings.timeout_seconds
            )
        except FutureTimeout:
            raise ServiceError(
                503,
                f"the model stayed busy for {self.settings.timeout_seconds:g} s",
                headers={"Retry-After": "1"},
            ) from None

    def _submit(self, texts: Sequence[Any], audio: Sequence[Any]) -> Future:
        """Queues contacts for the model thread; their results' future."""
        job = _Job(list(texts), list(audio))
        self._jobs.put(job)
        return job.done

    def _serve(self) -> None:
        """The model thread: takes every waiting job (at least one) and
        predicts them in one call."""
        while True:
            jobs = [self._jobs.get()]
            contacts = len(jobs[0].texts)
            while contacts < self.settings.max_batch:
                try:
                    jobs.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
                contacts += len(jobs[-1].texts)
            self._predict_together(jobs)
            self.on_batch(contacts)

    def _predict_together(self, jobs: list[_Job]) -> None:
        """Sets each job's results from one package call; if that call fails,
        each job is predicted alone so one request cannot fail the others."""
        if len(jobs) > 1:
            try:
                results = self._results(
                    [t for job in jobs for t in job.texts],
                    [a for job in jobs for a in job.audio],
                )
            except Exception:  # retried one by one below, each with its error
                LOGGER.exception("a micro-batch failed; predicting its requests alone")
            else:
                for job in jobs:
                    job.done.set_result(results[: len(job.texts)])
                    results = results[len(job.texts) :]
                return
        for job in jobs:
            try:
                job.done.set_result(self._results(job.texts, job.audio))
            except Exception as err:  # the request answers 500, the thread lives
                job.done.set_exception(err)

    def _results(
        self, texts: list[str | None], audio: list[bytes | None]
    ) -> list[dict[str, Any]]:
        rows = self.package.predict(texts=texts, audio=audio, top_k=self.settings.top_k)
        return [result_of(row) for _, row in rows.iterrows()]

    def warm_up(self) -> None:
        """One prediction from a typed message and a 1 s tone, so the first
        request does not pay for tracing and compiling; then ready."""
        rate = int(self.package.preprocessing["audio"]["sample_rate"])
        tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate)
        try:  # on the model thread: an export's interpreter is not thread-safe
            self._submit(
                ["warm up"], [AudioClip(tone.astype(np.float32), rate)]
            ).result()
        except Exception as err:  # reported by /readyz, never a crash
            self.warm_up_error = f"{type(err).__name__}: {err}"
            LOGGER.exception("warm-up prediction failed")
            return
        self.ready.set()


class Top(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    request_id: str
    label: str
    probability: float = Field(description="probability of `label`")
    top: list[Top] = Field(description="the most probable labels, best first")
    modalities: str = Field(description="what it was predicted from: text+audio, ...")
    rejected_inputs: dict[str, str] = Field(
        description="inputs that were sent but unusable, with their reason "
        "(the contact was predicted from the others)"
    )
    variant: str
    package_version: str | None


class ContactResult(BaseModel):
    index: int
    status: str = Field(description="predicted or rejected")
    reason: str | None = Field(description="why the contact was rejected")
    rejected_inputs: dict[str, str]
    label: str | None = None
    probability: float | None = None
    top: list[Top] | None = None
    modalities: str | None = None
    variant: str
    package_version: str | None


def _base64(value: Any) -> bytes:
    """Strict base64 (standard alphabet, padded): other characters are an
    error, never skipped."""
    if not isinstance(value, str):
        raise ValueError("audio must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as err:
        raise ValueError(f"audio is not base64 ({err})") from None


Base64Audio = Annotated[
    bytes,
    PlainValidator(_base64),
    WithJsonSchema({"type": "string", "format": "base64"}),
]


class BatchContact(BaseModel):
    text: str | None = Field(None, description="the typed message")
    audio: Base64Audio | None = Field(
        None, description="the voice message: the audio file's bytes in base64"
    )


class BatchRequest(BaseModel):
    contacts: list[BatchContact] = Field(min_length=1)


class BatchResponse(BaseModel):
    request_id: str
    results: list[ContactResult] = Field(description="one per contact, in order")


class Refusal(BaseModel):
    request_id: str | None
    reason: str = Field(description="a stable code: too_long, rate_limited, ...")
    detail: Any


REFUSALS: dict[int | str, dict[str, Any]] = {
    status: {"model": Refusal} for status in (401, 403, 408, 413, 415, 422, 429, 503)
}


def rejection_reason(result: dict[str, Any]) -> str:
    """The reason code of a rejected contact: its one rejected input's reason
    when only one was rejected (``too_long``), else the contact's
    (``no_usable_modality``)."""
    inputs = result["rejected_inputs"]
    return next(iter(inputs.values())) if len(inputs) == 1 else result["reason"]


def content_type_check(*accepted: str):
    """A dependency refusing other content types with 415."""

    def check(request: Request) -> None:
        given = request.headers.get("content-type", "").split(";")[0].strip()
        if given.lower() not in accepted:
            raise ServiceError(
                415, f"send {' or '.join(accepted)}, not {given or 'no content type'}"
            )

    return check


def create_app(package: ModelPackage, settings: ServeSettings) -> FastAPI:
    """The prediction service for one loaded package (see the module
    docstring); it warms up in the background and is ready after that."""
    metrics = ServiceMetrics()
    predictor = Predictor(package, settings, on_batch=metrics.model_batch.observe)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=predictor.warm_up, daemon=True).start()
        yield

    app = FastAPI(
        title="multimodal-fusion prediction service",
        summary=f"{package.variant}, package {package.version} "
        f"({package.export_format})",
        description="Predicts a contact's label from its typed message and/or its "
        "voice message. Send `Authorization: Bearer <token>` to /v1 and /metrics.",
        lifespan=lifespan,
        form_limits={
            "max_fields": 4,
            "max_files": 1,
            "max_part_size": settings.max_body_bytes,
        },
    )
    app.add_middleware(GuardMiddleware, settings=settings, metrics=metrics)
    # Documents the bearer scheme in OpenAPI; GuardMiddleware enforces it
    # before the body is read.
    bearer = Security(HTTPBearer(auto_error=False))

    @app.exception_handler(HTTPException)
    async def refused(request: Request, error: HTTPException) -> JSONResponse:
        if not isinstance(error, ServiceError):  # starlette's: 400, 404, 405
            error = ServiceError(error.status_code, error.detail, headers=error.headers)
        request.state.reason = error.reason
        return error_response(error, request.state.request_id)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        # The submitted values are left out: they may be message text.
        fields = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in error.errors()
        ]
        request.state.reason = "invalid_request"
        return error_response(ServiceError(422, fields), request.state.request_id)

    def answered(request: Request, results: list[dict[str, Any]]) -> None:
        metrics.observe_results(results)
        request.state.contacts = len(results)
        request.state.modalities = ",".join(
            r.get("modalities") or "none" for r in results[:8]
        )

    @app.post(
        "/v1/predict",
        response_model=Prediction,
        responses=REFUSALS,
        dependencies=[bearer, Depends(content_type_check(*FORM_TYPES))],
    )
    def predict(
        request: Request,
        text: Annotated[str | None, Form(description="the typed message")] = None,
        audio: Annotated[
            UploadFile | None,
            File(description="the voice message (wav, flac, ogg, ...)"),
        ] = None,
    ) -> dict[str, Any]:
        """Predicts one contact from `text` and/or `audio` (multipart form).
        A rejected contact gets 422 with the validation's reason code."""
        if text is None and audio is None:
            raise ServiceError(
                422, "send a `text` field, an `audio` file or both", reason="no_input"
            )
        clip = audio.file.read() if audio is not None else None
        result = predictor.predict([text], [clip])[0]
        answered(request, [result])
        if result["status"] != "predicted":
            reason = rejection_reason(result)
            request.state.reason = reason
            raise ServiceError(
                422,
                f"the contact was rejected: {reason}",
                reason=reason,
                extra={"rejected_inputs": result["rejected_inputs"]},
            )
        return {"request_id": request.state.request_id, **result}

    @app.post(
        "/v1/predict/batch",
        response_model=BatchResponse,
        responses=REFUSALS,
        dependencies=[bearer, Depends(content_type_check(*JSON_TYPES))],
    )
    def predict_batch(request: Request, batch: BatchRequest) -> dict[str, Any]:
        """Predicts up to `max_batch` contacts, each with `text` and/or `audio`
        (base64); rejected contacts are listed with their reason."""
        contacts = batch.contacts
        if len(contacts) > settings.max_batch:
            raise ServiceError(
                422,
                f"{len(contacts)} contacts; at most {settings.max_batch} per request",
                reason="too_many_contacts",
            )
        results = predictor.predict(
            [c.text for c in contacts], [c.audio for c in contacts]
        )
        answered(request, results)
        return {
            "request_id": request.state.request_id,
            "results": [{"index": i, **r} for i, r in enumerate(results)],
        }

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": Refusal}})
    def readyz(request: Request) -> Any:
        """The package is loaded and a warm-up prediction is done."""
        if not predictor.ready.is_set():
            detail = predictor.warm_up_error or "warming up"
            reason = "warm_up_failed" if predictor.warm_up_error else "warming_up"
            error = ServiceError(503, detail, reason=reason)
            return error_response(error, request.state.request_id)
        return {
            "status": "ready",
            "variant": package.variant,
            "package_version": package.version,
            "format": package.export_format,
            "modalities": package.modalities,
            "classes": package.classes,
        }

    @app.get("/metrics", dependencies=[bearer])
    def prometheus() -> Response:
        """Prometheus text exposition."""
        return Response(metrics.exposition(), media_type=metrics.content_type)

    return app
