"""The project's experiment tracking: kedro-mlflow's hook with what this project
logs (``settings.py`` registers it in place of the plugin's own instance).

kedro-mlflow keeps what it does well: the configuration (``conf/<env>/mlflow.yml``),
one MLflow run per tracked ``kedro run`` (started before the pipeline, marked
failed on an error, not started for the pipelines of
``tracking.disable_tracking``) and the run's Kedro tags. The project changes:

- parameters: every ``params:`` input of the pipeline's nodes, flattened,
  without YAML anchors, logged once in batches when the run starts
  (:func:`~multimodal_fusion.tracking.run_parameters`). kedro-mlflow logs the
  inputs of every node, one request each, and the whole ``parameters`` dict
  the report's node reads a second time, anchors included;
- the run is reopened in a node only in a thread where it is not active
  (see :meth:`RunTracking.before_node_run`);
- the tag ``kedro_env``: the environment, also when none was given;
- before the run is closed: the headline metrics and verdict of ``metrics``
  (:func:`~multimodal_fusion.tracking.headline_metrics`) and, as artifacts, the
  files this run saved for ``metrics``, ``summary_report``, ``report`` and
  ``model_package``. They are read from the catalog after the pipeline, so
  they are logged whatever the runner (node hooks of ``ParallelRunner`` run in
  other processes).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from multimodal_fusion.tracking import headline_metrics, run_parameters

logger = logging.getLogger(__name__)

METRICS = "metrics"
# Catalog entry -> artifact path of the files it saved in the run.
ARTIFACTS = {
    "metrics": "",
    "summary_report": "",
    "report": "",
    "model_package": "model_package",
}


def saved_path(dataset: Any) -> Path | None:
    """The local file or folder ``dataset`` wrote in this run (the path of its
    save version when versioned), or None when it is not on the local disk.

    Reads the dataset's path as kedro-mlflow's ``MlflowArtifactDataset`` does
    (``AbstractVersionedDataset`` has no public accessor).
    """
    if getattr(dataset, "_protocol", None) != "file":
        return None
    version = getattr(dataset, "_version", None)
    if version:
        return Path(dataset._get_versioned_path(dataset.resolve_save_version()))
    return Path(dataset._filepath)


class RunTracking(MlflowHook):
    """kedro-mlflow's ``MlflowHook`` plus the project's parameters, metrics and
    artifacts (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        self.env: str | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        loader = context.config_loader
        self.env = loader.env or loader.default_run_env
        super().after_context_created(context)

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        # kedro-mlflow keeps the run id of the process's previous session, and
        # its node hook reopens that run when this pipeline is not tracked.
        self.run_id = None
        super().before_pipeline_run(run_params, pipeline, catalog)
        if not self._is_mlflow_enabled:
            return
        mlflow.set_tag("kedro_env", self.env)
        params = {
            self.sanitize_param_name(key): value
            for key, value in run_parameters(
                catalog.load("parameters"), pipeline.datasets()
            ).items()
        }
        short = {k: v for k, v in params.items() if len(str(v)) <= MAX_PARAM_VAL_LENGTH}
        mlflow.log_params(short)
        for key in params.keys() - short.keys():
            self._log_param(key, params[key])  # mlflow.yml's long_params_strategy

    @hook_impl
    def before_node_run(self) -> None:
        # Nodes of ThreadRunner run in other threads, where MLflow has no active
        # run: reopen it there. kedro-mlflow reopens it in every node, nested,
        # which stacks it once per node in the main thread and leaves it active
        # after the pipeline (the next session in the process, a notebook's or a
        # test's, then logs into it). Parameters were logged when the run began.
        if self.run_id is not None and mlflow.active_run() is None:
            mlflow.start_run(run_id=self.run_id)

    @hook_impl
    def after_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        if self._is_mlflow_enabled:
            self._log_outputs(pipeline.all_outputs(), catalog)
        super().after_pipeline_run(run_params, pipeline, catalog)

    def _log_outputs(self, produced: set[str], catalog: Any) -> None:
        """Logs the headline metrics and the saved files of the pipeline's
        outputs (entries it did not produce are left out)."""
        if METRICS in produced:
            values, tags = headline_metrics(catalog.load(METRICS))
            mlflow.log_metrics(values)
            mlflow.set_tags(tags)
        for name, artifact_path in ARTIFACTS.items():
            if name not in produced:
                continue
            path = saved_path(catalog.get(name))
            if path is None or not path.exists():
                logger.warning(
                    "Not logged to MLflow: '%s' is not a file saved on this machine.",
                    name,
                )
            elif path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path)
            else:
                mlflow.log_artifact(str(path), artifact_path or None)
