"""``python -m multimodal_fusion serve``: loads a model package and serves it
with uvicorn on one process."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from multimodal_fusion.serving.settings import (
    TOKENS_VARIABLE,
    ServeConfigError,
    ServeSettings,
    check_exposure,
    tokens_from_credentials,
    tokens_from_env,
)

DEFAULTS = ServeSettings()


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m multimodal_fusion serve",
        description="Serve a model package over HTTP (POST /v1/predict). Bearer "
        f"tokens come from {TOKENS_VARIABLE} (comma-separated) and from serve.tokens "
        "in the Kedro credentials of --env (conf/<env>/credentials.yml).",
    )
    parse.add_argument("--package", required=True, type=Path, help="package folder")
    add_format_arguments(parse)
    parse.add_argument(
        "--env", default=None, help="Kedro environment whose credentials hold tokens"
    )
    parse.add_argument(
        "--conf-source", type=Path, default=Path("conf"), help="Kedro conf folder"
    )
    parse.add_argument("--host", default="127.0.0.1")
    parse.add_argument("--port", type=int, default=8000)
    parse.add_argument(
        "--insecure-local",
        action="store_true",
        help="serve without tokens (only on a loopback address)",
    )
    parse.add_argument(
        "--max-body-mb",
        type=float,
        default=DEFAULTS.max_body_bytes / 2**20,
        help="largest request body in MiB (413 above)",
    )
    parse.add_argument("--max-batch", type=int, default=DEFAULTS.max_batch)
    parse.add_argument(
        "--rate", type=float, default=DEFAULTS.rate_per_second, help="requests/s"
    )
    parse.add_argument("--burst", type=int, default=DEFAULTS.burst)
    parse.add_argument(
        "--max-concurrency",
        type=int,
        default=DEFAULTS.max_concurrency,
        help="prediction requests at once (503 above)",
    )
    parse.add_argument(
        "--timeout", type=float, default=DEFAULTS.timeout_seconds, help="seconds"
    )
    return parse


def add_format_arguments(parse: argparse.ArgumentParser) -> None:
    """``--format`` and ``--exports``: predict with a compressed export."""
    parse.add_argument(
        "--format",
        default="keras",
        help="what runs the networks: keras (default), litert (= litert_int8), "
        "onnx (= onnx_fp32), or an exact format: litert_float16, onnx_int8, "
        "pruned_50, pruned_80 (kedro run --pipelines export makes them)",
    )
    parse.add_argument(
        "--exports",
        type=Path,
        default=None,
        help="the model_exports folder to read the format from (default: the "
        "newest one beside the package that was made from its version)",
    )


def settings_of(args: argparse.Namespace, tokens: tuple[str, ...]) -> ServeSettings:
    return ServeSettings(
        tokens=tokens,
        max_body_bytes=int(args.max_body_mb * 2**20),
        max_batch=args.max_batch,
        rate_per_second=args.rate,
        burst=args.burst,
        max_concurrency=args.max_concurrency,
        timeout_seconds=args.timeout,
    )


def configure_logging() -> None:
    """Access log lines (already JSON) as they are; other logs with a level,
    warnings and errors only.

    Kedro configures logging when it is imported (the project's
    ``conf/logging.yml``: rich console output, the project's loggers at INFO),
    which would print and render three lines per model call; the service's
    console is its access log.
    """
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(message)s", force=True
    )
    logging.getLogger("multimodal_fusion").setLevel(logging.WARNING)
    access = logging.getLogger("multimodal_fusion.serving.access")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False


def serve_command(argv: list[str]) -> int:
    """Checks the settings, loads the package, serves until interrupted.

    Returns:
        2 when the settings or the package are refused (the reason on stderr).
    """
    args = parser().parse_args(argv)
    try:
        tokens = tokens_from_env() + tokens_from_credentials(args.conf_source, args.env)
        check_exposure(args.host, tokens, args.insecure_local)
        settings = settings_of(args, tokens)
    except ServeConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    configure_logging()

    import uvicorn

    from multimodal_fusion.package import ModelPackage, PackageError
    from multimodal_fusion.serving.app import create_app

    try:
        package = ModelPackage.load(
            args.package, exports=args.exports, format=args.format
        )
    except PackageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    uvicorn.run(
        create_app(package, settings),
        host=args.host,
        port=args.port,
        access_log=False,
        server_header=False,
        timeout_keep_alive=5,
        # Connections beyond this get 503 from uvicorn itself.
        limit_concurrency=max(64, 4 * settings.max_concurrency),
        log_level="warning",
    )
    return 0
