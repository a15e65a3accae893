"""The service's settings, its bearer tokens and the check that it is never
exposed without them."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from kedro.config import MissingConfigException

TOKENS_VARIABLE = "MF_SERVE_TOKENS"
MIN_TOKEN_CHARS = 16


class ServeConfigError(ValueError):
    """The service cannot start with these settings (the message says why)."""


@dataclass(frozen=True)
class ServeSettings:
    """Limits and security of the prediction service.

    Attributes:
        tokens: Accepted bearer tokens; empty means no authentication (only
            allowed on loopback with ``insecure_local``, see
            :func:`check_exposure`).
        max_body_bytes: Largest request body (413 above it).
        max_batch: Most contacts in one batch request, and in one model call
            (requests waiting together are predicted in one call).
        rate_per_second: Requests a client may make per second, sustained
            (token bucket, per bearer token, or per client address without
            authentication; 429 beyond it).
        burst: Requests a client may make at once (the bucket's size).
        max_concurrency: Prediction requests in the service at once, running or
            waiting for the model (503 with ``Retry-After`` beyond it).
        timeout_seconds: Longest wait for a request's body, and for the model
            (408 / 503 beyond it).
        top_k: Labels listed per prediction.
    """

    tokens: tuple[str, ...] = ()
    max_body_bytes: int = 20 * 2**20
    max_batch: int = 64
    rate_per_second: float = 10.0
    burst: int = 20
    max_concurrency: int = 16
    timeout_seconds: float = 30.0
    top_k: int = 3

    def __post_init__(self) -> None:
        short = [t for t in self.tokens if len(t) < MIN_TOKEN_CHARS]
        if short:
            raise ServeConfigError(
                f"{len(short)} bearer token(s) shorter than {MIN_TOKEN_CHARS} "
                "characters: use long random tokens (python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
        for name in ("max_body_bytes", "max_batch", "burst", "max_concurrency"):
            if getattr(self, name) < 1:
                raise ServeConfigError(f"{name} must be at least 1")
        if self.rate_per_second <= 0 or self.timeout_seconds <= 0:
            raise ServeConfigError("rate_per_second and timeout_seconds must be > 0")


def tokens_from_env(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """The bearer tokens in ``MF_SERVE_TOKENS`` (comma-separated)."""
    value = (environ if environ is not None else os.environ).get(TOKENS_VARIABLE, "")
    return tuple(t.strip() for t in value.split(",") if t.strip())


def tokens_from_credentials(conf_source: Path, env: str | None) -> tuple[str, ...]:
    """The bearer tokens under ``serve.tokens`` in Kedro's credentials of ``env``
    (``conf/base`` and ``conf/<env>/credentials*.yml``, gitignored): a list, or
    one comma-separated string. Empty when ``conf_source`` is not a Kedro
    configuration folder.

    Raises:
        ServeConfigError: when ``serve.tokens`` is neither a list nor a string.
    """
    if not (conf_source / "base").is_dir():
        return ()
    if env and not (conf_source / env).is_dir():
        raise ServeConfigError(
            f"no environment {env!r}: {conf_source / env} is missing"
        )
    from multimodal_fusion.config_loader import CONFIG_LOADER_ARGS, ProjectConfigLoader

    loader = ProjectConfigLoader(str(conf_source), env=env, **CONFIG_LOADER_ARGS)
    try:
        credentials = loader["credentials"]
    except MissingConfigException:  # no credentials file: no tokens from here
        return ()
    value = (credentials.get("serve") or {}).get("tokens") or ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(
        isinstance(t, str) for t in value
    ):
        raise ServeConfigError(
            f"serve.tokens in {conf_source}'s credentials must be a list of strings"
        )
    return tuple(t.strip() for t in value if t.strip())


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, tokens: tuple[str, ...], insecure_local: bool) -> None:
    """Refuses a service without tokens unless it binds to loopback and
    ``--insecure-local`` was given.

    Raises:
        ServeConfigError: naming what to do.
    """
    if tokens:
        return
    if not insecure_local:
        raise ServeConfigError(
            f"no bearer token: set {TOKENS_VARIABLE} (comma-separated tokens), or "
            "give --insecure-local to serve without authentication on 127.0.0.1"
        )
    if not is_loopback(host):
        raise ServeConfigError(
            f"--insecure-local only serves on a loopback address, not on {host!r}: "
            f"set {TOKENS_VARIABLE} to serve on other interfaces"
        )
