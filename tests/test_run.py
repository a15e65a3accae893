"""End-to-end runs through real Kedro sessions, in isolated copies of the project.

Each expensive run happens once per module (module-scoped fixtures); the tests
then read what the run wrote through the catalog's file layout. The real-data
runs use ``../shared/data`` and skip when it is absent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.framework.project import pipelines
from kedro.runner import ParallelRunner

from multimodal_fusion.evaluation import RUN_DEPENDENT_KEYS
from multimodal_fusion.pipeline_registry import MAIN_PIPELINES
from multimodal_fusion.pipelines.reporting.pipeline import PLOTS
from multimodal_fusion.report_html import fmt
from multimodal_fusion.variants import VARIANT_INPUTS
from tests.browser import render_dom, requires_chromium
from tests.pii_scan import planted_pii, scan_for
from tests.project_copy import (
    QUICK,
    TINY,
    TOY_N,
    capture_logs,
    copy_project,
    in_project,
    outputs,
    run_session,
)
from tests.toy_data import write_toy_dataset

VARIANTS = tuple(VARIANT_INPUTS)
REQUIRED_METRICS = ("accuracy", "macro_f1", "modalities", "split_sizes")
SPLITS = ("train", "val", "test")
# Lines of a saved metrics file that hold run-dependent measurements.
RUN_DEPENDENT_LINE = re.compile(
    rb'^\s*"(' + "|".join(RUN_DEPENDENT_KEYS).encode() + rb')": .*\n', re.M
)
DEMO_N = 150
DEMO_BATCH = 40  # new demo contacts scored by inference
OUTPUTS = outputs()
REPORTING = OUTPUTS / "08_reporting"


# --- helpers ----------------------------------------------------------------


def _versions(project: Path, filepath: str) -> list[Path]:
    """The saved versions of a versioned dataset, oldest first.

    Kedro stores ``<filepath>/<timestamp>/<file name>``; timestamps sort in time
    order.
    """
    folder = project / filepath
    assert folder.is_dir(), f"{filepath} was never saved"
    files = sorted(p / folder.name for p in folder.iterdir() if p.is_dir())
    assert all(f.is_file() for f in files), files
    return files


def _json_versions(project: Path, filepath: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in _versions(project, filepath)]


def _latest_json(project: Path, filepath: str) -> dict[str, Any]:
    return _json_versions(project, filepath)[-1]


def _variants(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The model-variant entries of ``metrics`` (those holding ``macro_f1``)."""
    return {k: v for k, v in metrics.items() if isinstance(v, dict) and "macro_f1" in v}


def _without_timing(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_timing(v)
            for k, v in value.items()
            if k not in RUN_DEPENDENT_KEYS
        }
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _configured_modalities(project: Path) -> dict[str, list[str]]:
    """``modalities`` of every variant in the copy's base modeling parameters."""
    params = yaml.safe_load((project / "conf/base/parameters_modeling.yml").read_text())
    return {variant: params[variant]["model"]["modalities"] for variant in VARIANTS}


def _raw_ids(raw: Path) -> set[str]:
    """Every id in the raw-data contract under ``raw`` (texts, labels, clips)."""
    texts = pd.read_csv(raw / "texts.csv", dtype=str, keep_default_na=False)
    labels = pd.read_csv(raw / "labels.csv", dtype=str, keep_default_na=False)
    clips = {p.stem for p in (raw / "audio").iterdir() if p.is_file()}
    return set(texts["id"]) | set(labels["id"]) | clips


def _check_accounting(project: Path, raw_ids: set[str]) -> dict[str, Any]:
    """Checks that the latest data summary and the outputs account for each id."""
    summary = _latest_json(project, f"{REPORTING}/data_summary.json")
    outcome = summary["outcome"]
    assert summary["raw_ids"] == len(raw_ids)
    assert sum(outcome.values()) == len(raw_ids)
    contacts = pd.read_parquet(project / OUTPUTS / "03_primary/contacts.parquet")
    rejected = pd.read_csv(
        project / OUTPUTS / "02_intermediate/rejected.csv",
        dtype=str,
        keep_default_na=False,
    )
    verdicts = rejected[rejected["source"] == "contact"]
    assert contacts["id"].is_unique and verdicts["id"].is_unique
    assert raw_ids == set(contacts["id"]) | set(verdicts["id"])
    counts = contacts["split"].value_counts()
    for split in (*SPLITS, "unlabeled"):
        assert outcome[split] == counts.get(split, 0), split
    assert outcome["rejected"] == len(verdicts) == sum(summary["rejected_ids"].values())
    for source, counts in summary["records"].items():
        rejected_records = (rejected["source"] == source).sum()
        assert sum(counts["rejected"].values()) == rejected_records, source
        assert counts["accepted"] + rejected_records == counts["total"], source
    return summary


def _check_variant_entries(
    metrics: dict[str, Any], summary: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """One entry per variant with the required keys and the run's split sizes."""
    variants = _variants(metrics)
    assert set(variants) == set(VARIANTS)
    expected_sizes = {split: summary["outcome"][split] for split in SPLITS}
    for name, entry in variants.items():
        missing = [key for key in REQUIRED_METRICS if key not in entry]
        assert not missing, f"{name} lacks {missing}"
        assert entry["split_sizes"] == expected_sizes, name
        assert entry["status"] in {"trained", "skipped"}, name
        if entry["status"] == "trained":
            assert 0.0 <= entry["accuracy"] <= 1.0, name
            assert 0.0 <= entry["macro_f1"] <= 1.0, name
        else:
            assert entry["reason"], name
            assert entry["accuracy"] is None and entry["macro_f1"] is None, name
    return variants


def _check_byte_identical_but_timings(project: Path) -> None:
    """Every versioned JSON output of the two runs is the same, byte for byte,
    once the timing lines are removed."""
    for name in ("metrics.json", "data_summary.json"):
        first, second = (
            RUN_DEPENDENT_LINE.sub(b"", p.read_bytes())
            for p in _versions(project, f"{REPORTING}/{name}")
        )
        assert first == second, name


# --- toy data: two runs of __default__ ----------------------------------------


# ``toy_project`` (conftest.py): the toy dataset with ``__default__`` run twice.


def test_toy_runs_keep_every_metrics_version(toy_project):
    versions = _versions(toy_project, f"{REPORTING}/metrics.json")

    assert len(versions) == 2
    assert versions[0].parent.name < versions[1].parent.name


def test_toy_versioned_outputs_of_one_run_share_its_version(toy_project):
    metric_versions = [
        p.parent.name for p in _versions(toy_project, f"{REPORTING}/metrics.json")
    ]
    versioned = [
        f"{REPORTING}/summary.md",
        f"{REPORTING}/report.html",
        f"{REPORTING}/error_analysis.json",
        f"{REPORTING}/run_history.json",
        *(f"{REPORTING}/plots/{plot}.json" for plot in PLOTS),
        f"{REPORTING}/data_summary.json",
        *(f"{REPORTING}/{v}/confusion_matrix.png" for v in VARIANTS),
        *(f"{OUTPUTS}/06_models/{v}/model.pkl" for v in VARIANTS),
    ]
    for filepath in versioned:
        names = [p.parent.name for p in _versions(toy_project, filepath)]
        assert names == metric_versions, filepath


def test_toy_metrics_hold_one_entry_per_variant(toy_project):
    summary = _latest_json(toy_project, f"{REPORTING}/data_summary.json")
    modalities = _configured_modalities(toy_project)

    for metrics in _json_versions(toy_project, f"{REPORTING}/metrics.json"):
        variants = _check_variant_entries(metrics, summary)
        for name, entry in variants.items():
            assert entry["status"] == "trained", name
            assert entry["modalities"] == modalities[name], name
        assert metrics["data"]["raw_ids"] == TOY_N
        assert metrics["best_model"] in VARIANTS


def test_toy_runs_are_deterministic(toy_project):
    first, second = _json_versions(toy_project, f"{REPORTING}/metrics.json")

    assert _without_timing(first) == _without_timing(second)
    _check_byte_identical_but_timings(toy_project)
    # The timing fields are the only ones left out, and they are present.
    assert all("train_seconds" in m for m in _variants(first).values())
    summaries = _json_versions(toy_project, f"{REPORTING}/data_summary.json")
    assert summaries[0] == summaries[1]
    reports = [p.read_text() for p in _versions(toy_project, f"{REPORTING}/summary.md")]
    assert reports[0] == reports[1]


def test_toy_plots_and_report_are_written(toy_project):
    metrics = _latest_json(toy_project, f"{REPORTING}/metrics.json")
    for variant in VARIANTS:
        for png in _versions(
            toy_project, f"{REPORTING}/{variant}/confusion_matrix.png"
        ):
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
            assert png.stat().st_size > 5_000, png

    comparison = _latest_json(toy_project, f"{REPORTING}/plots/model_comparison.json")
    bars = {trace["name"]: trace for trace in comparison["data"]}
    assert set(bars) == {"accuracy", "macro_f1"}
    for key, trace in bars.items():
        assert trace["type"] == "bar"
        assert trace["x"] == list(VARIANTS)
        assert trace["y"] == pytest.approx([metrics[v][key] for v in VARIANTS])

    report = _versions(toy_project, f"{REPORTING}/summary.md")[-1].read_text()
    assert report.startswith("# multimodal-fusion run summary")
    assert f"{TOY_N} raw ids" in report
    for variant in VARIANTS:
        assert f"| {variant} |" in report
    assert f"`{metrics['best_model']}`" in report


def test_toy_summary_accounts_for_every_raw_id(toy_project):
    raw_ids = _raw_ids(toy_project / "data/01_raw")
    assert len(raw_ids) == TOY_N

    summary = _check_accounting(toy_project, raw_ids)

    # The toy rows are all labelled, decodable and carry both modalities.
    assert summary["outcome"]["rejected"] == 0
    assert summary["outcome"]["unlabeled"] == 0
    assert summary["modalities"] == {
        "text_and_audio": TOY_N,
        "text_only": 0,
        "audio_only": 0,
    }
    metrics = _latest_json(toy_project, f"{REPORTING}/metrics.json")
    assert metrics["data"]["outcome"] == summary["outcome"]


def test_toy_early_fusion_beats_each_unimodal_model(toy_project):
    # By construction the text misses the intent in 1 row of 5 and the audio in
    # another 1 of 5, so a unimodal model tops out near 0.85-0.9 while fusion
    # can get every row. Observed: text 0.850, audio 0.925, early fusion 1.000
    # test accuracy (40 test rows); the margin asks for one row better.
    metrics = _latest_json(toy_project, f"{REPORTING}/metrics.json")
    fusion = metrics["early_fusion"]

    assert fusion["accuracy"] >= 0.95
    for unimodal in ("text_only", "audio_only"):
        for key in ("accuracy", "macro_f1"):
            assert fusion[key] >= metrics[unimodal][key] + 0.025, (unimodal, key)
    # Several fusion variants reach 1.000 here; the one chosen on validation
    # among them depends on ties, so only its kind and its gain are checked.
    assert len(metrics[metrics["best_fusion"]]["modalities"]) == 2
    assert metrics["fusion_gain_macro_f1"] > 0


def _latest_report(project: Path) -> str:
    return _versions(project, f"{REPORTING}/report.html")[-1].read_text()


def test_toy_html_report_numbers_match_metrics(toy_project):
    metrics = _latest_json(toy_project, f"{REPORTING}/metrics.json")
    page = _latest_report(toy_project)
    models = re.search(r'<section id="models">.*?</section>', page, re.S).group(0)
    for name, entry in _variants(metrics).items():
        row = re.search(f"<tr><td>{name}</td>.*?</tr>", models).group(0)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        expected = [entry[k] for k in ("accuracy", "macro_f1", "val_macro_f1", "ece")]
        assert cells[3:7] == [fmt(v) for v in expected], name
    complexity = re.search(r'<section id="complexity">.*?</section>', page, re.S)
    for name, entry in _variants(metrics).items():
        assert f'<td>{name}</td><td class="num">{entry["n_params"]}</td>' in (
            complexity.group(0)
        )
    assert fmt(metrics["fusion_gain_macro_f1"]) in page


def test_toy_run_history_shows_both_runs(toy_project):
    history = _latest_json(toy_project, f"{REPORTING}/run_history.json")
    versions = [
        p.parent.name for p in _versions(toy_project, f"{REPORTING}/metrics.json")
    ]
    assert [row["version"] for row in history] == versions
    section = re.search(
        r'<section id="history">.*?</section>', _latest_report(toy_project), re.S
    ).group(0)
    for version in versions:
        assert f"<td>{version}</td>" in section


@requires_chromium
def test_toy_html_report_renders_every_plot_in_chromium(toy_project, tmp_path):
    report = _versions(toy_project, f"{REPORTING}/report.html")[-1]
    dom = render_dom(report.as_uri(), tmp_path)
    for anchor in (
        "data",
        "models",
        "calibration",
        "errors",
        "complexity",
        "alignment",
        "history",
        "parameters",
    ):
        assert f'<section id="{anchor}">' in dom
    # plotly draws each figure into an SVG once its JavaScript has run
    assert dom.count('class="main-svg"') >= 2 * len(PLOTS)
    assert dom.count('class="plot"') == len(PLOTS)


# --- an interrupted run resumes with --only-missing-outputs ----------------------

# Node names carry their stage (the kedro-viz groups, pipeline_registry.py).
DATA_PROCESSING_NODES = ", ".join(
    f"data_processing.{name}"
    for name in (
        "clean_labels",
        "clean_texts",
        "join_contacts",
        "prepare_audio",
        "split_contacts",
        "summarise_data",
    )
)


@pytest.mark.slow
def test_an_interrupted_run_resumes_without_redoing_finished_nodes(
    tmp_path_factory: pytest.TempPathFactory,
):
    project = copy_project(tmp_path_factory.mktemp("resume") / "project")
    write_toy_dataset(project / "data/01_raw", n=64)
    # The run stopped after data_processing: its outputs are on disk.
    run_session(project, pipeline_name="data_processing")
    finished = sorted(
        p
        for p in (project / "data").rglob("*")
        if p.is_file() and "01_raw" not in p.parts
    )
    stamps = {p: p.stat().st_mtime_ns for p in finished}

    def resume():
        run_session(
            project,
            pipeline_name="__default__",
            runtime_params=TINY,
            only_missing_outputs=True,
        )

    with capture_logs() as log:
        resume()

    assert f"nodes with existing outputs: {DATA_PROCESSING_NODES}" in log.text
    assert {p: p.stat().st_mtime_ns for p in finished} == stamps  # not rewritten
    metrics = _latest_json(project, f"{REPORTING}/metrics.json")
    assert metrics["data"]["raw_ids"] == 64
    # Nothing is left to do: a second resume runs no node.
    with capture_logs() as log:
        resume()
    assert "(all persistent outputs exist)" in log.text


# --- runners -------------------------------------------------------------------


@pytest.mark.slow
def test_parallel_runner_gives_the_sequential_metrics_and_features(
    toy_project, tmp_path, monkeypatch
):
    project = copy_project(tmp_path / "project")
    write_toy_dataset(project / "data/01_raw", n=TOY_N)
    # This process has initialised TensorFlow (toy_project), which forked
    # workers cannot use: start them fresh, as Kedro documents. `kedro run
    # --runner ParallelRunner` needs no such setting (TF loads in workers only).
    # Spawned workers configure the project themselves (multimodal_fusion's
    # __init__): without that they would run with Kedro's default settings and
    # kedro-mlflow's own hook, which the project replaces, would fail there.
    monkeypatch.setenv("KEDRO_MP_CONTEXT", "spawn")
    run_session(project, runner=ParallelRunner(), runtime_params=QUICK)

    parallel = _latest_json(project, f"{REPORTING}/metrics.json")
    sequential = _latest_json(toy_project, f"{REPORTING}/metrics.json")
    assert _without_timing(parallel) == _without_timing(sequential)
    for name in ("raw_audio_features", "audio_features"):
        files = sorted((toy_project / OUTPUTS / "04_feature" / name).glob("*.npy"))
        others = sorted((project / OUTPUTS / "04_feature" / name).glob("*.npy"))
        assert [f.name for f in others] == [f.name for f in files], name
        assert {"frames.npy", "ids.npy", "pooled.npy"} <= {f.name for f in files}
        for file in files:
            other = project / OUTPUTS / "04_feature" / name / file.name
            np.testing.assert_array_equal(np.load(other), np.load(file), file.name)


# --- demo_data then __default__ -----------------------------------------------


@pytest.fixture(scope="module")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy where demo_data (small) wrote the raw data, then a run."""
    project = copy_project(tmp_path_factory.mktemp("demo") / "project")
    # Nested runtime params are deep-merged into parameters (OmegaConf merge):
    # the other demo_data keys keep their configured values. This is the same
    # as `kedro run --pipelines demo_data --params demo_data.n_contacts=150`.
    with capture_logs() as log:
        run_session(
            project,
            pipeline_name="demo_data",
            runtime_params={
                "demo_data": {"n_contacts": DEMO_N},
                "demo_incoming": {"demo_data": {"n_contacts": DEMO_BATCH}},
            },
        )
        # One run: two consecutive runs and their determinism are checked on
        # the toy project (toy_project), which runs the same code.
        run_session(project, pipeline_name="__default__", runtime_params=QUICK)
        run_session(project, pipeline_name="inference")
    (project / "run.log").write_text(log.text)
    return project


def test_demo_data_writes_the_raw_data_contract(demo_project):
    raw = demo_project / "data/01_raw"
    manifest = pd.read_csv(raw / "demo_manifest.csv", dtype={"id": str})
    texts = pd.read_csv(raw / "texts.csv", dtype=str, keep_default_na=False)
    labels = pd.read_csv(raw / "labels.csv", dtype=str, keep_default_na=False)
    clips = sorted((raw / "audio").iterdir())

    # The runtime parameter took effect and the rest of demo_data survived it.
    assert len(manifest) == DEMO_N and manifest["id"].is_unique
    params = yaml.safe_load(
        (demo_project / "conf/base/parameters_demo_data.yml").read_text()
    )["demo_data"]
    assert set(manifest["label"]) <= set(params["intents"])
    assert manifest["speaker"].nunique() <= params["n_speakers"]

    assert clips and all(p.suffix == ".flac" for p in clips)
    assert {p.stem for p in clips} == set(manifest.loc[manifest["has_audio"], "id"])
    assert set(texts["id"]) == set(manifest.loc[manifest["has_text"], "id"])
    assert set(labels["id"]) == set(manifest.loc[manifest["has_label"], "id"])
    # Every contact has at least one modality.
    assert (manifest["has_text"] | manifest["has_audio"]).all()


def test_demo_summary_accounts_for_every_raw_id(demo_project):
    raw_ids = _raw_ids(demo_project / "data/01_raw")
    assert len(raw_ids) == DEMO_N

    summary = _check_accounting(demo_project, raw_ids)

    assert summary["outcome"]["unlabeled"] > 0  # demo_data plants unlabeled rows
    assert sum(summary["modalities"].values()) == sum(
        summary["outcome"][s] for s in SPLITS
    )


def test_demo_outputs_and_logs_carry_no_planted_pii(demo_project):
    pii = planted_pii(demo_project / "data/01_raw/demo_manifest.csv")
    assert len(pii) > 20  # the demo plants emails, phones and card numbers
    batch = planted_pii(demo_project / "data/01_raw/incoming/demo_manifest.csv")
    assert batch  # the new contacts scored by inference carry PII too
    log_text = (demo_project / "run.log").read_text()
    assert "Completed node: clean_incoming_texts" in log_text
    pii += batch
    raw_texts = (demo_project / "data/01_raw/texts.csv").read_text()
    assert sum(p in raw_texts for p in pii) > 20  # ... in the raw input only
    data = demo_project / "data"
    assert scan_for(pii, data, exclude=[data / "01_raw"]) == []
    log = demo_project / "run.log"
    assert "Completed node: data_processing.clean_texts" in log.read_text()
    assert scan_for(pii, log.parent, exclude=[data]) == []


def test_demo_metrics_train_every_variant(demo_project):
    summary = _latest_json(demo_project, f"{REPORTING}/data_summary.json")
    metrics = _latest_json(demo_project, f"{REPORTING}/metrics.json")

    variants = _check_variant_entries(metrics, summary)

    assert {n: v["status"] for n, v in variants.items()} == dict.fromkeys(
        VARIANTS, "trained"
    )
    assert metrics["fusion_gain_macro_f1"] is not None


# --- the pipeline registry ----------------------------------------------------


def test_registry_lists_every_pipeline_and_keeps_demo_data_apart(tmp_path):
    project = copy_project(tmp_path / "project")
    with in_project(project):
        registered = dict(pipelines)

    assert set(registered) >= {*MAIN_PIPELINES, "demo_data", "inference", "__default__"}
    default = registered["__default__"]
    default_nodes = {n.name for n in default.nodes}
    assert default_nodes == {
        n.name for m in MAIN_PIPELINES for n in registered[m].nodes
    }
    for apart in ("demo_data", "inference"):
        nodes = {n.name for n in registered[apart].nodes}
        assert nodes and not nodes & default_nodes, apart
    # demo_data writes exactly what __default__ reads from the raw-data contract,
    # and the batch of new contacts inference reads.
    raw = {"raw_texts", "raw_audio", "raw_labels"}
    incoming = {"incoming_texts", "incoming_audio", "incoming_labels"}
    assert raw | incoming <= registered["demo_data"].all_outputs()
    assert raw <= default.inputs()
    assert registered["inference"].inputs() - incoming == {
        "model_package",
        "params:inference",
        "params:inference.join",
        "params:inference.drift",
        "params:engine",  # where its clips are featurised
    }


# --- real datasets (../shared/data) -------------------------------------------


def _run_real(tmp_path: Path, env: str, data_root: Path) -> dict[str, Any]:
    project = copy_project(tmp_path / "project")
    run_session(
        project,
        pipeline_name="__default__",
        env=env,
        # Full training (the accuracy is checked), the quick robustness sweep.
        runtime_params={"data_root": str(data_root), "robustness": QUICK["robustness"]},
    )
    reporting = outputs(env) / "08_reporting"
    metrics = _latest_json(project, f"{reporting}/metrics.json")
    summary = _latest_json(project, f"{reporting}/data_summary.json")
    _check_variant_entries(metrics, summary)
    assert sum(summary["outcome"].values()) == summary["raw_ids"]
    return metrics


@pytest.mark.slow
def test_fsdd_audio_only_on_the_official_split(tmp_path, shared_data):
    metrics = _run_real(tmp_path, "fsdd", shared_data / "fsdd")

    audio = metrics["audio_only"]
    assert audio["status"] == "trained"
    assert audio["split_sizes"]["test"] == 300
    assert audio["accuracy"] >= 0.985  # observed 0.990 (reference: 0.987)
    for variant in ("text_only", "early_fusion", "aligned_fusion"):
        assert metrics[variant]["status"] == "skipped", variant
    assert metrics["data"]["raw_ids"] == 3000
    assert metrics["data"]["modalities"]["audio_only"] == 3000
    assert metrics["fusion_gain_macro_f1"] is None
    assert metrics["best_model"] == "audio_only"


@pytest.mark.slow
def test_banking77_text_only_on_the_official_split(tmp_path, shared_data):
    metrics = _run_real(tmp_path, "banking77", shared_data / "banking77")

    text = metrics["text_only"]
    assert text["status"] == "trained"
    assert text["split_sizes"]["test"] == 3080
    assert text["accuracy"] >= 0.90  # observed 0.913 (reference: 0.894)
    for variant in ("audio_only", "early_fusion", "aligned_fusion"):
        assert metrics[variant]["status"] == "skipped", variant
    assert metrics["data"]["raw_ids"] == 13083
    assert metrics["data"]["modalities"]["text_only"] == 13083
    assert metrics["fusion_gain_macro_f1"] is None
    assert metrics["best_model"] == "text_only"
