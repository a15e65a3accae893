"""Project hooks: what a run says on the console.

- After each node that trains a model, one INFO line: the variant (the node's
  innermost namespace: ``modeling.text_only`` → ``text_only``), epochs,
  validation macro-F1 and seconds; for a late fusion of trained unimodal
  models, the models it combines; for the other seeds of ``modeling.seeds``,
  their seeds and validation macro-F1.
- A run that stops on a user error (:class:`~multimodal_fusion.errors.UserInputError`,
  a missing file, an unknown environment) ends with the error's message alone;
  its traceback goes to the log file (the ``multimodal_fusion.errors`` logger
  of ``conf/logging.yml``). Any other exception is a bug and keeps its traceback.
- A run whose nodes read ``params:engine`` set to ``dask`` without an address
  gets one Dask ``LocalCluster`` for all of them (:class:`EngineHooks`).
"""

from __future__ import annotations

import logging
import sys
from contextlib import ExitStack
from types import TracebackType
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl

from multimodal_fusion.errors import UserInputError
from multimodal_fusion.parallel import Engine

logger = logging.getLogger(__name__)
# Configured in conf/logging.yml to write to the log file only.
error_logger = logging.getLogger("multimodal_fusion.errors")


def _chain(error: BaseException):
    """The error, then its causes and contexts."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def user_error_message(error: BaseException) -> str | None:
    """The message to end a run with when ``error`` is the user's to fix, else
    None (a bug: keep the traceback)."""
    for link in _chain(error):
        if isinstance(link, UserInputError):
            return str(link)
        if isinstance(link, MissingConfigException):
            return (
                f"{str(link).rstrip('.')}. An environment is a folder conf/<env>/ "
                "(for example 'kedro run --env fsdd'); see docs/your-data.md."
            )
        if isinstance(link, FileNotFoundError):
            return (
                f"{str(error).rstrip('.')}. Put the file there, or point its catalog "
                "entry at your data in conf/<env>/catalog.yml (docs/your-data.md); "
                "an intermediate file is written by an earlier pipeline: run it first."
            )
    return None


def _log_file() -> str | None:
    """The file the ``multimodal_fusion.errors`` logger writes to, if any."""
    for handler in error_logger.handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return None


def _excepthook(previous):
    def hook(
        kind: type[BaseException],
        error: BaseException,
        traceback: TracebackType | None,
    ) -> None:
        message = user_error_message(error)
        log_file = _log_file()
        if message is None or log_file is None:
            previous(kind, error, traceback)
            return
        error_logger.error(
            "Run stopped by a user error", exc_info=(kind, error, traceback)
        )
        print(f"\nError: {message}\n(The traceback is in {log_file}.)", file=sys.stderr)

    hook.user_errors = True
    return hook


def install_user_error_hook() -> None:
    """Makes uncaught user errors end the process with their message alone."""
    if not getattr(sys.excepthook, "user_errors", False):
        sys.excepthook = _excepthook(sys.excepthook)


class ProjectHooks:
    @hook_impl
    def after_context_created(self, context: Any) -> None:
        install_user_error_hook()

    @hook_impl
    def after_node_run(self, node: Any, outputs: dict[str, Any]) -> None:
        variant = (node.namespace or node.name).rsplit(".", 1)[-1]
        for value in outputs.values():
            if isinstance(value, list) and value and hasattr(value[0], "routes_"):
                continue  # the other seeds' networks had their line
            if isinstance(value, list) and value and hasattr(value[0], "epochs_"):
                logger.info(
                    "%s: also trained with seeds %s, validation macro-F1 %s",
                    variant,
                    ", ".join(str(m.seed) for m in value),
                    ", ".join(f"{m.val_macro_f1_:.3f}" for m in value),
                )
                continue
            if getattr(value, "skipped_reason_", None):
                continue
            if hasattr(value, "routes_"):
                from multimodal_fusion.routing import short_routes

                moved = short_routes(value.routes_) or "every row on the network"
                logger.info("%s floor: %s", variant, moved)
                continue
            epochs = getattr(value, "epochs_", None)
            if epochs is None:
                continue
            score = getattr(value, "val_macro_f1_", None)
            scored = "" if score is None else f", validation macro-F1 {score:.3f}"
            if getattr(value, "reused_members_", False):
                logger.info(
                    "%s: weights of the trained %s models fit%s",
                    variant,
                    " + ".join(value.members_),
                    scored,
                )
                continue
            logger.info(
                "%s: trained %d epochs%s in %.1f s",
                variant,
                epochs,
                scored,
                value.train_seconds_,
            )


class EngineHooks:
    """Starts the run's Dask ``LocalCluster`` before the first node and closes
    it after the last, or when the run fails.

    A hook rather than a context manager in each node: the cluster (a few
    seconds to start) serves every per-clip node of the run, and its workers
    keep their imports warm between them. Only a pipeline that reads
    ``params:engine`` with ``name: dask`` and no ``address`` starts one.
    """

    def __init__(self) -> None:
        self._cluster = ExitStack()

    @hook_impl
    def before_pipeline_run(self, pipeline: Any, catalog: Any) -> None:
        if "params:engine" not in pipeline.inputs():
            return
        engine = Engine.of(catalog.load("params:engine"))
        if engine.name == "dask" and not engine.address:
            from multimodal_fusion.dask_engine import run_cluster

            self._cluster.enter_context(run_cluster(engine))

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._cluster.close()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._cluster.close()
