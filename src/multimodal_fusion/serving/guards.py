"""What every request passes before it reaches an endpoint: a request id, bearer
authentication, a per-client rate limit, a concurrency limit and a body-read
timeout; and, after it, one JSON access-log line and the request metrics.

It runs as plain ASGI middleware, so a refused request is answered before its
body is read.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from multimodal_fusion.serving.metrics import ServiceMetrics
from multimodal_fusion.serving.settings import ServeSettings

ACCESS_LOG = logging.getLogger("multimodal_fusion.serving.access")
# Paths that need a token; the first two also count against the rate and
# concurrency limits.
PREDICT_PREFIX = "/v1/"
AUTHENTICATED = (PREDICT_PREFIX, "/metrics")
KNOWN_PATHS = frozenset(
    {"/v1/predict", "/v1/predict/batch", "/healthz", "/readyz", "/metrics"}
)
# Reason codes of the service's own refusals, by status.
REASONS = {
    400: "malformed_request",
    401: "missing_token",
    403: "wrong_token",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "busy",
}


class ServiceError(HTTPException):
    """A refusal with a stable ``reason`` code (``REASONS`` by default) and
    optional extra fields for the JSON body."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=headers)
        self.reason = reason or REASONS.get(status_code, "error")
        self.extra = extra or {}


def error_response(error: HTTPException, request_id: str | None) -> JSONResponse:
    """The JSON body of every refusal: ``request_id``, ``reason``, ``detail``."""
    reason = getattr(error, "reason", REASONS.get(error.status_code, "error"))
    body = {
        "request_id": request_id,
        "reason": reason,
        "detail": error.detail,
        **getattr(error, "extra", {}),
    }
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


class RateLimiter:
    """A token bucket per client: ``burst`` requests at once, refilled at
    ``rate`` per second. Used from the event loop only (no lock needed)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def wait(self, client: str) -> float:
        """Takes a token for ``client``: 0.0 when it had one, else the seconds
        until it will."""
        now = self.clock()
        tokens, then = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate
        if client not in self._buckets and len(self._buckets) >= self.max_clients:
            self._forget_full(now)
        self._buckets[client] = (tokens - 1.0, now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        """Drops the buckets that have refilled (they equal a new bucket)."""
        full = [
            client
            for client, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * self.rate >= self.burst
        ]
        for client in full:
            del self._buckets[client]


def authenticate(header: str | None, tokens: tuple[str, ...]) -> int:
    """200 when ``header`` is ``Bearer <one of tokens>``, 401 when there is no
    bearer token, 403 when it is wrong. Every token is compared in constant
    time."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return 401
    given_bytes = given.strip().encode()
    matches = [hmac.compare_digest(given_bytes, t.encode()) for t in tokens]
    return 200 if any(matches) else 403


def client_key(token_header: str | None, scope: Scope) -> str:
    """Whom a request counts against: its token (hashed), else its address."""
    if token_header:
        return "token:" + hashlib.sha256(token_header.encode()).hexdigest()[:16]
    client = scope.get("client")
    return f"address:{client[0] if client else 'unknown'}"


class GuardMiddleware:
    """Request id, authentication, rate and concurrency limits, body timeout,
    access log and request metrics (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, *, settings: ServeSettings, metrics: ServiceMetrics
    ) -> None:
        self.app, self.settings, self.metrics = app, settings, metrics
        self.limiter = RateLimiter(settings.rate_per_second, settings.burst)
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                state["reason"] = refusal.reason
                await error_response(refusal, request_id)(scope, receive, send_with_id)
            elif scope["path"].startswith(PREDICT_PREFIX):
                await self._limited(scope, receive, send_with_id, started)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
            self.metrics.observe_request(path, status, seconds)
            _log_access(scope, state, path, status, seconds)

    def _refusal(self, scope: Scope) -> ServiceError | None:
        """Why the request is refused before its body is read, if it is."""
        path = scope["path"]
        if not path.startswith(AUTHENTICATED):
            return None
        header = Headers(scope=scope).get("authorization")
        refusal = self._unauthenticated(header)
        if refusal is None and path.startswith(PREDICT_PREFIX):
            key = client_key(header if self.settings.tokens else None, scope)
            refusal = self._over_limits(scope, key)
        return refusal

    def _unauthenticated(self, header: str | None) -> ServiceError | None:
        if not self.settings.tokens:
            return None
        verdict = authenticate(header, self.settings.tokens)
        if verdict == 401:
            return ServiceError(
                401,
                "send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if verdict == 403:
            return ServiceError(403, "the bearer token is not valid")
        return None

    def _over_limits(self, scope: Scope, client: str) -> ServiceError | None:
        length = _content_length(scope)
        if length is not None and length > self.settings.max_body_bytes:
            return ServiceError(413, too_large_detail(self.settings.max_body_bytes))
        wait = self.limiter.wait(client)
        if wait > 0:
            return ServiceError(
                429,
                f"more than {self.settings.burst} requests at once or "
                f"{self.settings.rate_per_second:g} per second",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        if self.in_flight >= self.settings.max_concurrency:
            return ServiceError(
                503,
                f"{self.in_flight} prediction requests in progress (the limit); "
                "retry shortly",
                headers={"Retry-After": "1"},
            )
        return None

    async def _limited(
        self, scope: Scope, receive: Receive, send: Send, started: float
    ) -> None:
        """Runs a prediction request, counted in flight, its body read within
        the timeout and the size limit."""
        deadline = started + self.settings.timeout_seconds
        limit = self.settings.max_body_bytes
        received = 0
        ending = MultipartEnding(Headers(scope=scope).get("content-type", ""))

        async def receive_limited() -> Message:
            nonlocal received
            try:
                message = await asyncio.wait_for(
                    receive(), max(deadline - time.perf_counter(), 0.001)
                )
            except TimeoutError:
                raise ServiceError(
                    408,
                    f"the request body did not arrive within "
                    f"{self.settings.timeout_seconds:g} s",
                ) from None
            body = message.get("body", b"")
            received += len(body)
            if received > limit:
                raise ServiceError(413, too_large_detail(limit))
            ending.add(body, more=message.get("more_body", False))
            return message

        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive_limited, send)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()


class MultipartEnding:
    """Checks that a multipart body ends with its closing boundary: the form
    parser silently drops a part cut short, so a truncated upload would
    otherwise be predicted from what arrived."""

    def __init__(self, content_type: str) -> None:
        kind, _, parameters = content_type.partition(";")
        boundary = ""
        for parameter in parameters.split(";"):
            name, _, value = parameter.strip().partition("=")
            if name.lower() == "boundary":
                boundary = value.strip('"')
        multipart = kind.strip().lower() == "multipart/form-data"
        self.closing = f"--{boundary}--".encode() if multipart and boundary else b""
        self.tail = b""

    def add(self, body: bytes, *, more: bool) -> None:
        """Takes the next chunk of the body.

        Raises:
            ServiceError: 400 when the last chunk arrived without the closing
                boundary.
        """
        if not self.closing:
            return
        self.tail = (self.tail + body)[-(len(self.closing) + 8) :]
        if not more and not self.tail.rstrip(b"\r\n").endswith(self.closing):
            raise ServiceError(
                400,
                "the multipart body ends before its closing boundary (truncated?)",
            )


def _content_length(scope: Scope) -> int | None:
    try:
        return int(Headers(scope=scope)["content-length"])
    except (KeyError, ValueError):
        return None


def too_large_detail(limit: int) -> str:
    return f"the request body is larger than {limit:,} bytes (the limit)"


def _log_access(
    scope: Scope, state: dict[str, Any], path: str, status: int, seconds: float
) -> None:
    """One JSON line: never the message text, the audio or a client's file
    name; ``path`` is a known route or ``other``."""
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "request_id": state.get("request_id"),
        "method": scope.get("method"),
        "path": path,
        "status": status,
        "latency_ms": round(seconds * 1000, 1),
        "modalities": state.get("modalities"),
        "contacts": state.get("contacts"),
        "reason": state.get("reason"),
    }
    ACCESS_LOG.info(json.dumps(entry))
