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
from multimodal_fusion.variants import ALIGNMENTS, LATE_MEMBERS, ROUTED, VARIANT_INPUTS
from tests.browser import kedro_viz_flowchart, render_dom, requires_chromium
from tests.project_copy import copy_project

VARIANTS = tuple(VARIANT_INPUTS)
# The node that trains each variant: late fusion combines trained models.
TRAIN_TASK = {
    v: "combine_trained_models" if v in LATE_MEMBERS else "train_classifier"
    for v in VARIANTS
}
# The node that makes each variant's model: a variant of several modalities
# gets the unimodal models as its floor.
MODEL_TASK = {
    v: "route_to_unimodal" if v in ROUTED else TRAIN_TASK[v] for v in VARIANTS
}
HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 120
SERVED_AT = re.compile(r"running at\s+(http://127\.0\.0\.1:\d+)")
# The nodes of each variant, per stage: a group nested in the stage's group.
VARIANT_TASKS = {
    "modeling": None,  # MODEL_TASK
    "evaluation": {"evaluate_classifier", "sweep_robustness", "assess_variant"},
    "reporting": {"plot_confusion_matrix"},
}
# conf/base/catalog.yml's layers, in the order kedro-viz draws them.
LAYERS = (
    "raw",
    "intermediate",
    "primary",
    "feature",
    "model_input",
    "models",
    "model_output",
    "reporting",
    "package",
)


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

    # Every node sits in its stage's namespace, variants one level deeper.
    for name in ("split_contacts", "summarise_data"):
        node = tasks[f"data_processing.{name}"]
        assert node["name"] == name
        assert node["modular_pipelines"] == ["data_processing"]
    assert tasks["modeling.build_model_inputs"]["modular_pipelines"] == ["modeling"]
    assert "evaluation.collect_metrics" in tasks
    for alignment in ALIGNMENTS:
        fit = tasks[f"modeling.{alignment}.fit_alignment"]
        assert fit["modular_pipelines"] == [f"modeling.{alignment}"]
    for variant in VARIANTS:
        train = tasks[f"modeling.{variant}.{TRAIN_TASK[variant]}"]
        assert train["name"] == TRAIN_TASK[variant]
        assert train["modular_pipelines"] == [f"modeling.{variant}"]
        # Parameter and dataset names keep no stage prefix.
        if variant not in LATE_MEMBERS:
            assert f"{variant}.model" in train["parameters"]
    assert all(t["modular_pipelines"] for t in tasks.values())
    # demo_data stands apart from __default__.
    assert "plan_contacts_node" not in tasks


def test_viz_groups_the_five_stages_with_the_variants_nested(main_graph):
    modular = main_graph["modular_pipelines"]
    by_id = {n["id"]: n for n in main_graph["nodes"]}
    nested = {
        "modeling": (*VARIANTS, *ALIGNMENTS),
        "evaluation": (*VARIANTS, *ALIGNMENTS),
        "reporting": VARIANTS,
    }

    assert set(modular) == {
        "__root__",
        *MAIN_PIPELINES,
        *(f"{stage}.{name}" for stage, names in nested.items() for name in names),
    }
    # At the top level: the five stages and the datasets between them only.
    root = {(c["id"], c["type"]) for c in modular["__root__"]["children"]}
    assert {i for i, kind in root if kind == "modularPipeline"} == set(MAIN_PIPELINES)
    assert not {i for i, kind in root if kind == "task"}
    for stage, names in nested.items():
        children = {(c["id"], c["type"]) for c in modular[stage]["children"]}
        groups = {i for i, kind in children if kind == "modularPipeline"}
        assert groups == {f"{stage}.{name}" for name in names}
    for variant in VARIANTS:
        for stage, expected in VARIANT_TASKS.items():
            group = modular[f"{stage}.{variant}"]
            tasks = {
                by_id[c["id"]]["name"] for c in group["children"] if c["type"] == "task"
            }
            trained = {TRAIN_TASK[variant], MODEL_TASK[variant]}
            assert tasks == (expected or trained), (stage, variant)
            # Collapsed, the group still shows what flows in and out.
            assert group["inputs"] and group["outputs"]
        # The model flows out of modeling to evaluation and reporting.
        outputs = {by_id[i]["name"] for i in modular[f"modeling.{variant}"]["outputs"]}
        assert f"{variant}_model" in outputs
        assert by_id[f"modeling.{variant}"]["type"] == "modularPipeline"


def test_viz_edges_wire_each_variant(main_graph):
    by_name = {n.get("full_name") or n["name"]: n["id"] for n in main_graph["nodes"]}
    edges = {(e["source"], e["target"]) for e in main_graph["edges"]}
    ids = {n["id"] for n in main_graph["nodes"]}

    assert all(s in ids and t in ids for s, t in edges)
    for variant in VARIANTS:
        model = by_name[f"{variant}_model"]
        evaluate = by_name[f"evaluation.{variant}.evaluate_classifier"]
        assert (by_name[f"modeling.{variant}.{MODEL_TASK[variant]}"], model) in edges
        if variant in ROUTED:  # its network, then the floor
            network = by_name[f"{variant}_network"]
            assert (
                by_name[f"modeling.{variant}.{TRAIN_TASK[variant]}"],
                network,
            ) in edges
            assert (network, by_name[f"modeling.{variant}.route_to_unimodal"]) in edges
        assert (model, evaluate) in edges
        # evaluate -> <variant>_metrics -> assess -> <variant>_assessment -> collect
        metrics = by_name[f"{variant}_metrics"]
        assessment = by_name[f"{variant}_assessment"]
        assess = by_name[f"evaluation.{variant}.assess_variant"]
        assert (evaluate, metrics) in edges
        assert (metrics, assess) in edges
        assert (assess, assessment) in edges
        assert (assessment, by_name["evaluation.collect_metrics"]) in edges


def _layers(graph: dict[str, Any]) -> dict[str, str | None]:
    """The layer of each dataset the graph holds, by name."""
    return {n["name"]: n["layer"] for n in graph["nodes"] if n["type"] == "data"}


def test_viz_orders_the_catalog_layers(viz_url, main_graph):
    # kedro-viz sends no layers when the catalog's form a cycle.
    assert main_graph["layers"] == list(LAYERS)
    layers = _layers(main_graph)
    memory = {
        n["name"]
        for n in main_graph["nodes"]
        if n["type"] == "data" and n["dataset_type"].endswith("MemoryDataset")
    }
    assert {name for name, layer in layers.items() if not layer} == memory
    assert layers["raw_texts"] == "raw"
    assert layers["cca_alignment_model"] == "model_input"
    assert layers["text_only_model"] == "models"
    assert layers["text_only.confusion_matrix"] == "reporting"
    assert layers["model_package"] == "package"
    # inference reads the package first: its layers keep their order there too.
    inference = _get_json(f"{viz_url}/api/pipelines/inference")
    used = set(_layers(inference).values())
    # package and raw are both sources there: kedro-viz may list either first.
    order = [layer for layer in inference["layers"] if layer in used]
    assert set(order[:2]) == {"package", "raw"}
    assert order[2:] == ["intermediate", "primary", "model_output", "reporting"]


def test_viz_serves_demo_data_as_its_own_pipeline(viz_url):
    graph = _get_json(f"{viz_url}/api/pipelines/demo_data")
    tasks = _tasks(graph)

    assert graph["selected_pipeline"] == "demo_data"
    assert "plan_contacts_node" in tasks
    assert not any(name.endswith("split_contacts") for name in tasks)
    outputs = {n["name"] for n in graph["nodes"] if n["type"] == "data"}
    assert {"raw_texts", "raw_audio", "raw_labels"} <= outputs


@requires_chromium
def test_viz_default_view_shows_the_five_stages_in_layers(viz_url, tmp_path):
    screenshot = tmp_path / "kedro_viz.png"
    dom = render_dom(viz_url + "/", tmp_path, screenshot=screenshot)
    nodes, layers = kedro_viz_flowchart(dom)

    # One collapsed group per stage, no loose task, the datasets between them.
    groups = [label for kind, label in nodes if kind == "modularPipeline"]
    assert sorted(groups) == sorted(MAIN_PIPELINES)
    assert not [label for kind, label in nodes if kind == "task"]
    datasets = {label for kind, label in nodes if kind == "data"}
    assert {"raw_texts", "contacts", "metrics", "model_package"} <= datasets
    assert layers == list(LAYERS)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 10_000  # a drawing, not a blank page
