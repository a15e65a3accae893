"""Datasets declared without a modality, and user errors, through real Kedro:
sessions in project copies, and ``kedro run`` as a user types it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import multimodal_fusion
from multimodal_fusion.errors import UserInputError
from tests.project_copy import copy_project, run_session
from tests.toy_data import write_toy_dataset

N = 64


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = copy_project(tmp_path / "project")
    write_toy_dataset(project / "data/01_raw", n=N)
    return project


def _no_texts_env(project: Path, how: str) -> str:
    """An environment whose raw_texts declares no text: a header-only CSV, or
    a MemoryDataset as docs/your-data.md shows."""
    env = project / "conf" / "notext"
    env.mkdir()
    if how == "header_only_csv":
        (project / "data/01_raw/texts.csv").write_text("id,text\n")
        (env / "catalog.yml").write_text("{}\n")
    else:
        (env / "catalog.yml").write_text("raw_texts: {type: MemoryDataset, data: {}}\n")
    return "notext"


@pytest.mark.parametrize("how", ["header_only_csv", "memory_dataset"])
def test_a_dataset_without_texts_is_processed_as_audio_only(project, how):
    env = _no_texts_env(project, how)
    run_session(project, pipeline_name="data_processing", env=env)

    outputs = project / "data" / env
    contacts = pd.read_parquet(outputs / "03_primary/contacts.parquet")
    assert len(contacts) == N
    assert not contacts["has_text"].any() and contacts["has_audio"].all()
    (version,) = (outputs / "08_reporting/data_summary.json").iterdir()
    summary = json.loads((version / "data_summary.json").read_text())
    assert summary["records"]["raw_texts"]["total"] == 0
    assert summary["modalities"]["audio_only"] == N


def _one_class(project: Path) -> None:
    labels = project / "data/01_raw/labels.csv"
    frame = pd.read_csv(labels, dtype=str)
    frame["label"] = "billing"
    frame.to_csv(labels, index=False)


def test_one_class_stops_the_run_before_any_audio_is_decoded(project):
    _one_class(project)
    with pytest.raises(UserInputError, match="a classifier needs at least 2"):
        run_session(project, pipeline_name="data_processing")
    assert not (project / "data/local/02_intermediate/audio_index.parquet").exists()


def _kedro_run(project: Path, *args: str) -> subprocess.CompletedProcess:
    """``kedro run`` in the copy, with this checkout's package."""
    source = str(Path(multimodal_fusion.__file__).parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")]),
        "COLUMNS": "100",
    }
    return subprocess.run(
        [sys.executable, "-m", "kedro", "run", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("case", "args", "says"),
    [
        ("one_class", ["--pipelines", "data_processing"], "a classifier needs"),
        ("missing_file", ["--pipelines", "data_processing"], "labels.csv"),
        ("wrong_env", ["--env", "nosuchenv"], "conf/<env>/"),
    ],
)
def test_a_user_error_ends_in_one_paragraph_with_the_traceback_in_the_log(
    project, case, args, says
):
    if case == "one_class":
        _one_class(project)
    elif case == "missing_file":
        (project / "data/01_raw/labels.csv").unlink()
    done = _kedro_run(project, *args)

    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback (most recent call last)" not in output
    last = output.strip().split("\n\n")[-1]
    assert last.startswith("Error: ") and says in last, output
    assert len(output.splitlines()) <= 30, output
    log = (project / "logs/info.log").read_text()
    assert "Run stopped by a user error" in log
    assert "Traceback (most recent call last)" in log


def test_an_unforeseen_error_keeps_its_traceback(project):
    # A TypeError in a node: nothing says it is the user's to fix.
    done = _kedro_run(
        project,
        "--pipelines",
        "data_processing",
        "--params",
        "data_processing.text.max_chars=many",
    )
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stdout + done.stderr
