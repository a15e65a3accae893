"""Pipelines with one job each: after one full run every registered pipeline
runs alone from persisted inputs, no pipeline module imports another's, and two
environments keep their own outputs and run histories."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

from multimodal_fusion.pipeline_registry import MAIN_PIPELINES
from tests.project_copy import TINY, digests, outputs, run_session

PIPELINES = Path(__file__).parents[1] / "src/multimodal_fusion/pipelines"


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative ones resolved)."""
    package = ".".join(path.relative_to(PIPELINES.parents[1]).with_suffix("").parts)
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level)[0] if node.level else ""
            names.add(".".join(p for p in (base, node.module or "") if p))
    return names


def test_no_pipeline_module_imports_another_pipeline():
    for folder in (p for p in PIPELINES.iterdir() if (p / "pipeline.py").exists()):
        for path in folder.glob("*.py"):
            for name in _imported_modules(path):
                if name.startswith("multimodal_fusion.pipelines."):
                    assert name.split(".")[2] == folder.name, (path, name)


def test_plain_modules_import_no_pipeline():
    for path in PIPELINES.parent.rglob("*.py"):
        if PIPELINES in path.parents or path.name == "pipeline_registry.py":
            continue
        for name in _imported_modules(path):
            assert not name.startswith("multimodal_fusion.pipelines"), (path, name)


def _versions(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


@pytest.fixture
def project(toy_project: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(toy_project, copy)
    return copy


@pytest.mark.slow
def test_each_main_pipeline_runs_alone_after_a_full_run(project):
    reporting = project / outputs() / "08_reporting"
    for name in reversed(MAIN_PIPELINES):
        before = len(_versions(reporting / "data_summary.json"))
        run_session(project, pipeline_name=name, runtime_params=TINY)
        if name == "data_processing":
            assert len(_versions(reporting / "data_summary.json")) == before + 1
    # evaluation re-scored the models and reporting packaged one, each alone.
    assert len(_versions(reporting / "metrics.json")) == 2 + 1
    assert len(_versions(project / outputs() / "06_models/model_package")) == 2 + 1


@pytest.mark.slow
def test_two_environments_keep_separate_outputs_and_histories(project):
    local = project / outputs()
    before = digests(local)
    (project / "conf/textonly").mkdir()
    (project / "conf/textonly/catalog.yml").write_text(
        "raw_audio:\n  type: MemoryDataset\n  data: {}\n"
    )
    run_session(
        project, pipeline_name="__default__", env="textonly", runtime_params=TINY
    )

    assert digests(local) == before
    other = project / outputs("textonly") / "08_reporting"
    (metrics,) = _versions(other / "metrics.json")
    (history,) = _versions(other / "run_history.json")
    rows = json.loads((history / "run_history.json").read_text())
    assert [row["environment"] for row in rows] == ["textonly"]
    local_rows = json.loads(
        (
            _versions(local / "08_reporting/run_history.json")[-1] / "run_history.json"
        ).read_text()
    )
    assert [row["environment"] for row in local_rows] == ["local", "local"]
    assert rows[0]["data_fingerprint"] != local_rows[0]["data_fingerprint"]
    assert (
        json.loads((metrics / "metrics.json").read_text())["audio_only"]["status"]
        == "skipped"
    )
