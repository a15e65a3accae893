"""Isolated copies of the Kedro project for end-to-end tests.

A copy holds ``pyproject.toml``, every configuration environment, an empty
``conf/local``, an empty ``logs/`` and an empty MLflow store; the package itself
comes from the editable install, so ``src/`` is an empty folder
(``bootstrap_project`` insists that it exists). Runs inside a copy write their
``data/``, logs and MLflow runs there and never touch the real project's.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from multimodal_fusion.variants import VARIANT_INPUTS

PROJECT_ROOT = Path(__file__).parents[1]
TOY_N = 160
# End-to-end runs in the suite check the plumbing, determinism and accounting,
# not how good the models get (`make demo` and the real-data tests measure
# that): fewer epochs and robustness levels keep the suite fast. Every run of
# one project copy uses the same parameters.
QUICK = {
    **{variant: {"model": {"epochs": 15}} for variant in VARIANT_INPUTS},
    "modeling": {"alignments": {"deep_alignment": {"epochs": 15}}},
    "robustness": {"snr_db": [10, -5], "text_rates": [0.5], "missing_rates": [1.0]},
}
# For runs that check which nodes run and what they write, not the models.
TINY = {
    **QUICK,
    **{variant: {"model": {"epochs": 2}} for variant in VARIANT_INPUTS},
    "modeling": {"alignments": {"deep_alignment": {"epochs": 2}}},
}


# The embedded MLflow store of conf/base/mlflow.yml, at the project root.
TRACKING_STORE = "mlruns.db"


def quiet_kedro_logging(name: str) -> None:
    """Makes the Kedro sessions of this process log warnings only (unless
    ``KEDRO_LOGGING_CONFIG`` is already set), without telemetry or TensorFlow's
    info lines: for scripts whose own result lines would be buried under whole
    runs' logs. Call it before the first session (Kedro reads the setting when
    it is first imported)."""
    os.environ["KEDRO_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    config = Path(tempfile.gettempdir()) / f"{name}-logging.yml"
    config.write_text(
        "version: 1\ndisable_existing_loggers: false\n"
        "handlers: {console: {class: logging.StreamHandler, level: WARNING}}\n"
        "root: {handlers: [console], level: WARNING}\n"
    )
    os.environ.setdefault("KEDRO_LOGGING_CONFIG", str(config))


def outputs(env: str | None = None) -> Path:
    """Where a run in ``env`` writes its outputs, relative to the project
    (``conf/base/globals.yml``: ``data/<env>``, ``local`` by default)."""
    return Path("data") / (env or "local")


def latest_version(folder: Path) -> Path:
    """The newest saved version of a versioned dataset at ``folder``: Kedro
    stores ``<folder>/<timestamp>/<folder's name>``, timestamps sort in time."""
    return sorted(p for p in folder.iterdir() if p.is_dir())[-1] / folder.name


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path: equal digests
    mean nothing under it was written."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@functools.cache
def empty_tracking_store() -> bytes | None:
    """The bytes of an empty MLflow SQLite store, made once per process (None
    without the ``tracking`` extra). MLflow builds a new store with about 3 s of
    schema migrations; a project copy starts from this one instead."""
    try:
        import mlflow
    except ModuleNotFoundError:
        return None
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / TRACKING_STORE
        mlflow.MlflowClient(f"sqlite:///{store.as_posix()}").search_experiments()
        return store.read_bytes()


def copy_project(destination: Path) -> Path:
    """Copies ``pyproject.toml`` and ``conf/`` (without ``conf/local``), and
    puts an empty MLflow store where ``conf/base/mlflow.yml`` looks for it.

    Args:
        destination: A folder that does not exist yet, or an empty one.

    Returns:
        The project path of the copy.
    """
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PROJECT_ROOT / "pyproject.toml", destination / "pyproject.toml")
    shutil.copytree(
        PROJECT_ROOT / "conf",
        destination / "conf",
        ignore=shutil.ignore_patterns("local", "credentials*"),
    )
    (destination / "conf" / "local").mkdir()
    (destination / "src").mkdir()
    (destination / "logs").mkdir()  # conf/logging.yml's log file
    if store := empty_tracking_store():
        (destination / TRACKING_STORE).write_bytes(store)
    return destination


@contextmanager
def in_project(project: Path) -> Iterator[None]:
    """Works in ``project``: current directory, bootstrapped Kedro settings.

    Undoes what it changes in the test process on exit: the working directory,
    ``sys.path`` and ``PYTHONPATH`` (``bootstrap_project`` prepends the source
    folder to both).
    """
    from kedro.framework.startup import bootstrap_project

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        patch.setattr(sys, "path", list(sys.path))
        patch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        bootstrap_project(project)
        yield


def run_session(
    project: Path,
    *,
    pipeline_name: str = "__default__",
    env: str | None = None,
    runtime_params: dict[str, Any] | None = None,
    runner: Any = None,
    **run_args: Any,
) -> dict[str, Any]:
    """Runs one pipeline in a real ``KedroSession`` inside ``project``.

    ``runner`` is a Kedro runner instance (``SequentialRunner`` when None);
    ``run_args`` go to ``session.run`` (``only_missing_outputs``,
    ``from_nodes``, ...), as the ``kedro run`` options of the same names.

    Returns:
        What ``session.run`` returns (free outputs of the pipeline).
    """
    from kedro.framework.session import KedroSession

    with (
        in_project(project),
        KedroSession.create(
            project_path=project, env=env, runtime_params=runtime_params
        ) as session,
    ):
        # kedro 1.7 deprecates ``pipeline_name`` in favour of ``pipeline_names``.
        return session.run(pipeline_names=[pipeline_name], runner=runner, **run_args)


class LogCapture(logging.Handler):
    """Keeps every log record's formatted message (``text``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def capture_logs() -> Iterator[LogCapture]:
    """Captures what Kedro sessions log, as a user would see it.

    Kedro applies its logging configuration when a project is first bootstrapped
    in a process, replacing the root handlers; the handler is added after that.
    """
    with (
        tempfile.TemporaryDirectory() as folder,
        in_project(copy_project(Path(folder) / "bootstrap")),
    ):
        pass
    handler = LogCapture()
    # The root logger, and the loggers conf/logging.yml keeps off it (Kedro's
    # per-dataset lines, user errors' tracebacks: the log file only).
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
