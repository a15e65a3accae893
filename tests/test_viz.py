"""kedro-viz serves the project's DAG: a real ``kedro viz run`` on loopback.

The server runs in a copy of the project, in its own process group (it forks a
child), and the whole group is stopped at teardown.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from multimodal_fusion.pipeline_registry import MAIN_PIPELINES
from multimodal_fusion.variants import ALIGNMENTS, VARIANT_INPUTS
from tests.browser import render_dom, requires_chromium
from tests.project_copy import copy_project

VARIANTS = tuple(VARIANT_INPUTS)
HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 120
SERVED_AT = re.compile(r"running at\s+(http://127\.0\.0\.1:\d+)")
VARIANT_TASKS = {
    "train_classifier",
    "evaluate_classifier",
    "plot_confusion_matrix",
    "sweep_robustness",
    "assess_variant",
}


def _free_port() -> int:
    """A free loopback port below 49152: kedro-viz 12 refuses ephemeral ports."""
    for port in random.Random().sample(range(20000, 49000), 200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found for kedro viz")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return json.load(response)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    try:  # the forked child may outlive the leader
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def viz_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a kedro-viz server started in a copy of the project."""
    project = copy_project(tmp_path_factory.mktemp("viz") / "project")
    port = _free_port()
    log_path = project / "viz.log"
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    command = [sys.executable, "-m", "kedro", "viz", "run", "--no-browser"]
    command += ["--host", HOST, "--port", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"kedro viz exited with {proc.returncode}:\n{log_path.read_text()}"
                )
            # kedro viz moves to the next port when the one asked for is taken.
            served = SERVED_AT.search(log_path.read_text(errors="replace"))
            if served:
                base = served.group(1)
            try:
                _get_json(f"{base}/api/main")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"kedro viz did not answer in {STARTUP_TIMEOUT_S} s:\n"
                        + log_path.read_text()
                    )
                time.sleep(1)
        yield base
    finally:
        _stop_group(proc)


@pytest.fixture(scope="module")
def main_graph(viz_url: str) -> dict[str, Any]:
    return _get_json(f"{viz_url}/api/main")


def _tasks(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Task nodes by full (namespaced) name."""
    return {n["full_name"]: n for n in graph["nodes"] if n["type"] == "task"}


def test_viz_lists_the_registered_pipelines(main_graph):
    listed = {p["id"] for p in main_graph["pipelines"]}

    assert listed >= {*MAIN_PIPELINES, "demo_data", "__default__"}
    assert main_graph["selected_pipeline"] == "__default__"


def test_viz_main_graph_holds_the_default_pipeline_nodes(main_graph):
    tasks = _tasks(main_graph)

    for name in ("split_contacts", "summarise_data", "build_model_inputs"):
        assert name in tasks
        assert tasks[name]["modular_pipelines"] is None
    assert "collect_metrics" in tasks
    for alignment in ALIGNMENTS:
        fit = tasks[f"{alignment}.fit_alignment"]
        assert fit["modular_pipelines"] == [alignment]
    for variant in VARIANTS:
        train = tasks[f"{variant}.train_classifier"]
        assert train["name"] == "train_classifier"
        assert train["modular_pipelines"] == [variant]
        assert f"{variant}.model" in train["parameters"]
    # demo_data stands apart from __default__.
    assert "plan_contacts_node" not in tasks


def test_viz_shows_each_variant_as_a_collapsible_modular_pipeline(main_graph):
    modular = main_graph["modular_pipelines"]
    by_id = {n["id"]: n for n in main_graph["nodes"]}

    assert set(modular) == {"__root__", *VARIANTS, *ALIGNMENTS}
    root_children = {(c["id"], c["type"]) for c in modular["__root__"]["children"]}
    for variant in VARIANTS:
        assert (variant, "modularPipeline") in root_children
        assert by_id[variant]["type"] == "modularPipeline"
        children = modular[variant]["children"]
        task_names = {by_id[c["id"]]["name"] for c in children if c["type"] == "task"}
        assert task_names == VARIANT_TASKS, variant
        data_names = {by_id[c["id"]]["name"] for c in children if c["type"] == "data"}
        outputs = {by_id[i]["name"] for i in modular[variant]["outputs"]}
        # The model flows out of the group to package_model (reporting).
        assert f"{variant}_model" in data_names | outputs
        # Collapsed, the group still shows what flows in and out.
        assert modular[variant]["inputs"] and modular[variant]["outputs"]


def test_viz_edges_wire_each_variant(main_graph):
    by_name = {n.get("full_name") or n["name"]: n["id"] for n in main_graph["nodes"]}
    edges = {(e["source"], e["target"]) for e in main_graph["edges"]}
    ids = {n["id"] for n in main_graph["nodes"]}

    assert all(s in ids and t in ids for s, t in edges)
    for variant in VARIANTS:
        model = by_name[f"{variant}_model"]
        assert (by_name[f"{variant}.train_classifier"], model) in edges
        assert (model, by_name[f"{variant}.evaluate_classifier"]) in edges
        # evaluate -> <variant>_metrics -> assess -> <variant>_assessment -> collect
        metrics = by_name[f"{variant}_metrics"]
        assessment = by_name[f"{variant}_assessment"]
        assess = by_name[f"{variant}.assess_variant"]
        assert (by_name[f"{variant}.evaluate_classifier"], metrics) in edges
        assert (metrics, assess) in edges
        assert (assess, assessment) in edges
        assert (assessment, by_name["collect_metrics"]) in edges


def test_viz_serves_demo_data_as_its_own_pipeline(viz_url):
    graph = _get_json(f"{viz_url}/api/pipelines/demo_data")
    tasks = _tasks(graph)

    assert graph["selected_pipeline"] == "demo_data"
    assert "plan_contacts_node" in tasks
    assert "split_contacts" not in tasks
    outputs = {n["name"] for n in graph["nodes"] if n["type"] == "data"}
    assert {"raw_texts", "raw_audio", "raw_labels"} <= outputs


@requires_chromium
def test_viz_draws_the_dag_in_chromium(viz_url: str, tmp_path) -> None:
    dom = render_dom(viz_url + "/", tmp_path)
    collapsed = dom.count('class="pipeline-node pipeline-node--modularPipeline"')
    # one collapsible group per variant and per alignment
    assert collapsed == len(VARIANTS) + len(ALIGNMENTS)
    assert dom.count('class="pipeline-node pipeline-node--task"') >= 10
    for node in ("split_contacts", "collect_metrics", *VARIANTS):
        assert node in dom
