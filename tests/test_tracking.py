"""Experiment tracking: what a run logs to MLflow, read back from the SQLite
store of the toy project (``toy_project`` ran ``__default__`` twice in its own
copy, so its store is the copy's, never the real project's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multimodal_fusion.tracking import headline_metrics, run_parameters
from tests.project_copy import (
    QUICK,
    TRACKING_STORE,
    copy_project,
    outputs,
    run_session,
)
from tests.toy_data import write_toy_dataset

mlflow = pytest.importorskip("mlflow", reason="the `tracking` extra is not installed")

REPORTING = outputs() / "08_reporting"
EXPERIMENT = "multimodal_fusion"  # conf/base/mlflow.yml


def _client(project: Path):
    store = project / TRACKING_STORE
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{store.as_posix()}")


def _runs(client) -> list:
    """The runs of the project's experiment, oldest first."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return []
    return client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time ASC"]
    )


def _versions(project: Path, filepath: Path) -> list[Path]:
    """The saved versions of a versioned file, oldest first."""
    folder = project / filepath
    return sorted(p / folder.name for p in folder.iterdir() if p.is_dir())


# --- what is logged ---------------------------------------------------------


def test_run_parameters_are_what_nodes_read_flat_without_yaml_anchors():
    parameters = {
        "seed": 3,
        "_network": {"units": 8},
        "modeling": {"epochs": 5, "_template": {"x": 1}, "rates": [0.1, 0.2]},
        "inference": {"top_k": 3},
    }
    datasets = ["params:modeling", "params:seed", "params:_network", "contacts"]
    assert run_parameters(parameters, datasets) == {
        "seed": 3,
        "modeling.epochs": 5,
        "modeling.rates": [0.1, 0.2],
    }
    assert run_parameters(parameters, ["params:modeling.epochs"]) == {
        "modeling.epochs": 5
    }
    # The whole dict (the report prints it) adds nothing nodes do not read.
    assert run_parameters(parameters, ["parameters", "params:seed"]) == {"seed": 3}


def test_headline_metrics_cover_trained_variants_and_the_verdict():
    metrics = {
        "text_only": {
            "status": "trained",
            "macro_f1": 0.5,
            "accuracy": 0.6,
            "macro_f1_ci": [0.4, 0.6],
            "modalities": ["text"],
        },
        "audio_only": {"status": "skipped", "macro_f1": None, "reason": "no audio"},
        "best_model": "text_only",
        "best_unimodal": "text_only",
        "best_fusion": None,
        "fusion_gain_macro_f1": None,
        "fusion_gain_ci": None,
        "fusion_gain_significant": None,
    }
    values, tags = headline_metrics(metrics)
    assert values == {
        "macro_f1/text_only": 0.5,
        "accuracy/text_only": 0.6,
        "macro_f1_ci/text_only_low": 0.4,
        "macro_f1_ci/text_only_high": 0.6,
    }
    assert tags == {"best_model": "text_only", "best_unimodal": "text_only"}

    gained = {
        **metrics,
        "fusion_gain_macro_f1": 0.1,
        "fusion_gain_ci": [-0.02, 0.2],
        "fusion_gain_significant": False,
    }
    values, tags = headline_metrics(gained)
    assert values["fusion_gain/macro_f1"] == 0.1
    assert (values["fusion_gain/ci_low"], values["fusion_gain/ci_high"]) == (-0.02, 0.2)
    assert tags["fusion_gain_significant"] == "False"


# --- a real run, read back from the store ---------------------------------------


@pytest.fixture(scope="module")
def tracked(toy_project: Path):
    """The toy project's MLflow client, experiment and runs, oldest first."""
    client = _client(toy_project)
    return client, client.get_experiment_by_name(EXPERIMENT), _runs(client)


def test_each_toy_run_is_one_finished_mlflow_run_in_the_project_copy(
    tracked, toy_project
):
    client, experiment, runs = tracked
    assert len(runs) == 2
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert {run.data.tags["kedro_env"] for run in runs} == {"local"}
    # Artifacts live beside the store, under the copy, whatever the cwd was.
    root = toy_project.resolve().as_uri()
    assert experiment.artifact_location.startswith(root)
    assert all(run.info.artifact_uri.startswith(root) for run in runs)


def test_a_run_logs_the_parameters_its_nodes_read_flat_without_anchors(tracked):
    _, _, runs = tracked
    params = runs[-1].data.params
    # Runtime parameters (QUICK) are logged with the values the run used.
    epochs = QUICK["modeling"]["alignments"]["deep_alignment"]["epochs"]
    assert params["modeling.alignments.deep_alignment.epochs"] == str(epochs)
    assert params["robustness.snr_db"] == str(QUICK["robustness"]["snr_db"])
    assert params["early_fusion.model.epochs"] == "15"
    assert {"seed", "data_processing.split.test_size"} <= params.keys()
    # No anchors, no settings of other pipelines, no second copy of all of them.
    assert not [k for k in params if any(p.startswith("_") for p in k.split("."))]
    assert not [k for k in params if k.split(".")[0] in {"demo_data", "parameters"}]


def test_a_run_logs_the_headline_metrics_of_its_own_metrics_version(
    tracked, toy_project
):
    client, _, runs = tracked
    versions = _versions(toy_project, REPORTING / "metrics.json")
    assert len(versions) == len(runs)
    for run, version in zip(runs, versions, strict=True):
        metrics = json.loads(version.read_text())
        values, tags = headline_metrics(metrics)
        assert run.data.metrics == pytest.approx(values)
        assert {k: run.data.tags[k] for k in tags} == tags
        assert run.data.tags["best_model"] == metrics["best_model"]
        logged = client.download_artifacts(run.info.run_id, "metrics.json")
        assert Path(logged).read_bytes() == version.read_bytes()
    # Per-variant scores, the fusion gain and its interval are all there.
    latest = runs[-1].data.metrics
    assert "fusion_gain/macro_f1" in latest and "fusion_gain/ci_low" in latest
    assert any(k.startswith("macro_f1/") for k in latest)


def test_a_run_logs_its_report_and_model_package(tracked, toy_project, tmp_path):
    client, _, runs = tracked
    run = runs[-1]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "summary.md", "metrics.json", "model_package"} <= names

    report = Path(client.download_artifacts(run.info.run_id, "report.html"))
    saved = _versions(toy_project, REPORTING / "report.html")[-1]
    assert report.read_bytes() == saved.read_bytes()

    package = Path(
        client.download_artifacts(run.info.run_id, "model_package", tmp_path)
    )
    folder = _versions(toy_project, outputs() / "06_models/model_package")[-1]
    files = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    assert (
        files
        and sorted(p.relative_to(package) for p in package.rglob("*") if p.is_file())
        == files
    )
    assert all((package / f).read_bytes() == (folder / f).read_bytes() for f in files)


def test_a_partial_run_is_tracked_and_a_disabled_pipeline_is_not(tmp_path):
    """data_processing alone in one copy, then in another copy whose
    conf/local/mlflow.yml disables it (as conf/base does for inference and
    demo_data): the second run logs nothing and does not reopen the first."""
    tracked_copy, untracked_copy = (
        copy_project(tmp_path / name) for name in ("tracked", "untracked")
    )
    (untracked_copy / "conf/local/mlflow.yml").write_text(
        "tracking:\n  disable_tracking:\n    pipelines: [data_processing]\n"
    )
    for project in (tracked_copy, untracked_copy):
        write_toy_dataset(project / "data/01_raw", n=40)
        run_session(project, pipeline_name="data_processing")

    (run,) = _runs(_client(tracked_copy))
    assert run.info.status == "FINISHED"
    assert run.data.tags["kedro_env"] == "local"
    # Only what its nodes read; no metrics or artifacts of later pipelines.
    assert {k.split(".")[0] for k in run.data.params} == {"data_processing", "seed"}
    assert run.data.metrics == {}
    assert _client(tracked_copy).list_artifacts(run.info.run_id) == []
    assert _runs(_client(untracked_copy)) == []
    # conf/local/mlflow.yml overrode one key; the rest is still conf/base's.
    experiment = _client(untracked_copy).get_experiment_by_name(EXPERIMENT)
    artifacts = (untracked_copy / "mlartifacts").resolve().as_uri()
    assert experiment.artifact_location == artifacts
