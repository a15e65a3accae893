"""Executes every analysts' notebook in ``notebooks/`` on a small generated dataset.

Each notebook runs in an isolated copy of the project: ``pyproject.toml``,
``conf/base``, an empty ``conf/local``, an empty ``src/`` (the package comes from
the editable install; ``bootstrap_project`` only needs the folder), the toy
dataset in ``data/01_raw``, where the base catalog looks for the raw entries, and
the outputs of a finished toy run (``toy_project``) in ``data/local``. The
kernel's working directory is ``<copy>/notebooks``, as for an analyst, so the
developer's ``data/`` is never read or written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import PROJECT_ROOT
from tests.project_copy import (
    TRACKING_STORE,
    digests,
    empty_tracking_store,
    latest_version,
    outputs,
)
from tests.toy_data import write_toy_dataset

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))
N_CONTACTS = 12
TIMEOUT = 300
# Appended to explore_contacts.ipynb: reads the new node's output from the catalog.
DURATIONS_PROBE = """
import json as _json
_durations = catalog.load("clip_durations")
print(_json.dumps({"ids": _durations["id"].tolist(),
                   "durations": _durations["duration_s"].tolist()}))
"""


def _copy_project(root: Path, notebook: Path, finished_run: Path) -> Path:
    """A minimal project in ``root`` with the toy dataset and the outputs of a
    finished run; returns the notebook dir."""
    shutil.copy2(PROJECT_ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(PROJECT_ROOT / "conf" / "base", root / "conf" / "base")
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()
    if store := empty_tracking_store():
        (root / TRACKING_STORE).write_bytes(store)
    write_toy_dataset(root / "data" / "01_raw", n=N_CONTACTS)
    shutil.copytree(finished_run / outputs(), root / outputs())
    nb_dir = root / "notebooks"
    nb_dir.mkdir()
    shutil.copy2(notebook, nb_dir / notebook.name)
    return nb_dir


def _execute(nb: nbformat.NotebookNode, nb_dir: Path) -> nbformat.NotebookNode:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    env.pop("MPLBACKEND", None)  # let the kernel use its inline backend
    client = NotebookClient(
        nb,
        timeout=TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(nb_dir)}},
    )
    return client.execute(env=env)


def _tagged(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def _mime_outputs(cell: nbformat.NotebookNode, mime: str) -> list[str]:
    return [
        out["data"][mime]
        for out in cell.outputs
        if out["output_type"] in {"display_data", "execute_result"}
        and mime in out["data"]
    ]


def _stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(
        out["text"]
        for out in cell.outputs
        if out["output_type"] == "stream" and out["name"] == "stdout"
    )


def _html_tables(cell: nbformat.NotebookNode) -> list[str]:
    return [
        out["data"]["text/html"]
        for out in cell.outputs
        if out["output_type"] == "execute_result" and "text/html" in out["data"]
    ]


def _check_explore_contacts(nb: nbformat.NotebookNode) -> None:
    audio = _mime_outputs(_tagged(nb, "listen"), "text/html")
    assert any("<audio" in html for html in audio), "no playable Audio output"
    assert _mime_outputs(_tagged(nb, "spectrogram"), "image/png")
    assert _mime_outputs(_tagged(nb, "histogram"), "image/png")

    probe = json.loads(_stdout(nb.cells[-1]).strip().splitlines()[-1])
    toy_ids = [f"t{i:04d}" for i in range(N_CONTACTS)]
    assert probe["ids"] == toy_ids  # one row per clip, sorted by id
    assert probe["durations"] == pytest.approx([0.6] * N_CONTACTS)


def _check_review_run(nb: nbformat.NotebookNode, finished_run: Path) -> None:
    metrics = json.loads(
        latest_version(
            finished_run / outputs() / "08_reporting/metrics.json"
        ).read_text()
    )
    best = metrics["best_model"]
    assert f"chosen model: {best}" in _stdout(_tagged(nb, "run"))
    assert len(_mime_outputs(_tagged(nb, "features"), "image/png")) == 1

    assert _html_tables(_tagged(nb, "metrics"))
    probe = json.loads(_stdout(nb.cells[-1]).strip().splitlines()[-1])
    assert probe == {
        name: pytest.approx([entry["macro_f1"], *entry["macro_f1_ci"]])
        for name, entry in metrics.items()
        if isinstance(entry, dict) and entry.get("status") == "trained"
    }
    gain = _stdout(_tagged(nb, "gain"))
    low, high = metrics["fusion_gain_ci"]
    assert f"fusion gain {metrics['fusion_gain_macro_f1']:+.3f} macro-F1" in gain
    assert f"[{low:+.3f}, {high:+.3f}]" in gain
    assert _mime_outputs(_tagged(nb, "gain"), "image/png")
    assert _html_tables(_tagged(nb, "confusion"))

    table = _html_tables(_tagged(nb, "predict"))[0]
    rows = dict(
        re.findall(r"<td>(new-1|text-only|voice-only)</td>\s*<td>(\w+)</td>", table)
    )
    assert rows == dict.fromkeys(["new-1", "text-only", "voice-only"], "predicted")
    for contact, modalities in [("text-only", "text"), ("voice-only", "audio")]:
        assert re.search(
            rf"<td>{contact}</td>(?:\s*<td>[^<]*</td>){{4,}}\s*<td>{modalities}</td>",
            table,
        )


# Appended to review_run.ipynb: the scores table it built, for trained variants.
SCORES_PROBE = """
import json as _json
_trained = scores.dropna(subset=["macro_f1"])[["macro_f1", "ci_low", "ci_high"]]
print(_json.dumps({name: row.tolist() for name, row in _trained.iterrows()}))
"""


# Extra checks per notebook (probe cell appended, check of the executed notebook
# and the finished run); notebooks without an entry must just run cleanly.
CHECKS = {
    "explore_contacts.ipynb": (
        DURATIONS_PROBE,
        lambda nb, _: _check_explore_contacts(nb),
    ),
    "review_run.ipynb": (SCORES_PROBE, _check_review_run),
}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_toy_project(
    notebook: Path, tmp_path: Path, toy_project: Path
) -> None:
    nb_dir = _copy_project(tmp_path, notebook, toy_project)
    outputs_before = digests(tmp_path / outputs())
    nb = nbformat.read(nb_dir / notebook.name, as_version=4)
    probe, check = CHECKS.get(notebook.name, (None, None))
    if probe:
        nb.cells.append(nbformat.v4.new_code_cell(probe.strip()))

    nb = _execute(nb, nb_dir)  # raises CellExecutionError on the first error

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells)
    errors = [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert not errors
    if check:
        check(nb, toy_project)
    # The run wrote nothing into the project copy's data folder.
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["01_raw", "local"]
    assert digests(tmp_path / outputs()) == outputs_before


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], "commit notebooks with outputs cleared"
            assert cell.execution_count is None
