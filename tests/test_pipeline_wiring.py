"""Nodes keep their names in ParallelRunner's worker processes."""

import multiprocessing
import pickle
import typing
from concurrent.futures import ProcessPoolExecutor

from kedro.pipeline import Node

from multimodal_fusion.pipelines import named_partial
from multimodal_fusion.pipelines.reporting.nodes import plot_robustness
from multimodal_fusion.pipelines.reporting.pipeline import (
    create_pipeline as reporting,
)
from multimodal_fusion.pipelines.tuning.pipeline import create_pipeline as tuning


def _names(nodes):
    return [node._func_name for node in nodes]


def test_partial_nodes_keep_their_function_names_in_worker_processes(recwarn):
    # multiprocessing pickles a plain functools.partial without the name
    # update_wrapper gave it; Kedro then warns about each such node.
    nodes = [
        n for n in (reporting() + tuning()).nodes if isinstance(n.func, named_partial)
    ]
    assert {n.func.func.__name__ for n in nodes} == {
        "plot_robustness",
        "tune_variant",
    }
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        in_worker = pool.submit(_names, nodes).result()
    assert in_worker == [n.func.func.__name__ for n in nodes]
    assert not [w for w in recwarn if "partial" in str(w.message)]


def test_a_named_partial_binds_like_its_function():
    node = Node(named_partial(plot_robustness, imperfection="typos"), "metrics", "plot")
    assert node._func_name == "plot_robustness"
    assert typing.get_type_hints(node.func) == typing.get_type_hints(plot_robustness)
    assert pickle.loads(pickle.dumps(node.func)).keywords == {"imperfection": "typos"}
