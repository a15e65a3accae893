"""The ``dask`` engine on real clusters: the same features as the local engine,
in input order, from a Kedro run whose LocalCluster starts and stops with it,
and with nothing lost when a worker is killed mid-run."""

from __future__ import annotations

import functools
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip(
    "distributed", reason="the dask extra is not installed (pip install -e '.[dask]')"
)
import psutil  # noqa: E402 - distributed's dependency
from distributed import Client  # noqa: E402

from multimodal_fusion.dask_engine import (  # noqa: E402
    RUN_SCHEDULER,
    cluster,
    process_cluster,
)
from multimodal_fusion.datasets import ArrayFolderDataset, AudioFolderDataset  # noqa: E402
from multimodal_fusion.featurization import (  # noqa: E402
    audio_extractor,
    extract_audio_features,
    gather_chunks,
)
from multimodal_fusion.parallel import Engine, map_batches  # noqa: E402
from tests.project_copy import copy_project, run_session  # noqa: E402
from tests.toy_data import SMALL_AUDIO, write_toy_dataset  # noqa: E402

AUDIO = {**SMALL_AUDIO, "floor_db": 50, "n_jobs": 2, "batch_size": 3}
RATE = 16000


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Toy clips (8 and 16 kHz, tones and noise) and their contacts."""
    root = tmp_path_factory.mktemp("dask_clips")
    audio = write_toy_dataset(root, n=48)["audio"]
    loaders = AudioFolderDataset(path=str(audio), filename_suffix=".wav").load()
    ids = sorted(loaders)
    contacts = pd.DataFrame({"id": ids, "has_audio": [i % 7 != 3 for i in range(48)]})
    return contacts, loaders


@pytest.fixture(scope="module")
def local_cluster():
    """A LocalCluster of 2 single-threaded workers, for the module."""
    with cluster(Engine("dask", n_workers=2)) as address:
        yield address


def _features(contacts, loaders, engine):
    return gather_chunks(
        extract_audio_features(contacts, loaders, AUDIO, RATE, engine, log_cuts=False)
    )


def _assert_identical(ours, theirs):
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert np.array_equal(ours[key], theirs[key]), key


def test_dask_and_local_engines_give_identical_features(clips, local_cluster):
    contacts, loaders = clips
    local = _features(contacts, loaders, None)
    dask = _features(contacts, loaders, {"name": "dask", "address": local_cluster})
    _assert_identical(dask, local)
    assert local["pooled"].shape[0] == 48 and local["present"].sum() == 41


def _late_first(batch):
    """Early batches finish last."""
    time.sleep(0.05 * (10 - batch[0]))
    return list(batch), os.getpid()


def test_results_come_in_input_order_whoever_finishes_first(local_cluster):
    results = list(
        map_batches(
            _late_first,
            list(range(10)),
            batch_size=1,
            engine={"name": "dask", "address": local_cluster},
        )
    )
    assert [r[0] for r in results] == [[i] for i in range(10)]
    assert os.getpid() not in {r[1] for r in results}
    assert len({r[1] for r in results}) == 2  # both workers took batches


def _dask_children() -> set[int]:
    """Spawned worker processes of this process (not multiprocessing's
    resource tracker, which lives as long as the process)."""
    return {
        p.pid
        for p in psutil.Process().children(recursive=True)
        if "spawn_main" in " ".join(p.cmdline())
    }


def _wait_for_exit(pids: set[int]) -> set[int]:
    """The processes of ``pids`` still running after up to 10 s."""
    processes = []
    for pid in pids:
        try:
            processes.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(processes, timeout=10)
    return {p.pid for p in alive}


@pytest.mark.slow
def test_a_kedro_run_on_a_local_cluster_writes_the_local_features(tmp_path):
    before = _dask_children()  # the module's cluster
    project = copy_project(tmp_path / "project")
    write_toy_dataset(project / "data/01_raw", n=48)
    run_session(project, pipeline_name="data_processing")
    folder = project / "data/local/04_feature/raw_audio_features"
    assert not folder.exists()

    def extract(engine):
        run_session(
            project,
            pipeline_name="feature_extraction",
            runtime_params={
                "engine": engine,
                "feature_extraction": {"audio": {"batch_size": 4, "n_jobs": 2}},
            },
        )
        return ArrayFolderDataset(path=str(folder)).load()

    local = {k: np.array(v) for k, v in extract({"name": "local"}).items()}
    dask = extract({"name": "dask", "n_workers": 2})
    _assert_identical({k: np.array(v) for k, v in dask.items()}, local)
    # The run's LocalCluster is closed: no worker left, nothing announced.
    assert RUN_SCHEDULER not in os.environ
    assert not _wait_for_exit(_dask_children() - before)
    # Closed on failure too (a batch size of 0 stops extraction).
    with pytest.raises(ValueError):
        run_session(
            project,
            pipeline_name="feature_extraction",
            runtime_params={
                "engine": {"name": "dask", "n_workers": 1},
                "feature_extraction": {"audio": {"batch_size": 0}},
            },
        )
    assert RUN_SCHEDULER not in os.environ
    assert not _wait_for_exit(_dask_children() - before)


def _slowly(func, batch):
    """``func``, taking long enough for a worker to be killed mid-run."""
    time.sleep(0.1)
    return func(batch)


def test_a_killed_worker_loses_nothing(clips):
    contacts, loaders = clips
    ids = contacts["id"].to_numpy()
    extract = functools.partial(audio_extractor(AUDIO, RATE).load_and_extract, loaders)
    local = list(map_batches(extract, ids, batch_size=2, n_jobs=1))
    with process_cluster(2) as external:
        results = []
        batches = map_batches(
            functools.partial(_slowly, extract),
            ids,
            batch_size=2,
            engine={"name": "dask", "address": external.address},
        )
        for batch in batches:
            results.append(batch)
            if len(results) == 3:
                victim = external.workers[0]
                victim.send_signal(signal.SIGKILL)
                victim.wait(timeout=10)
        assert victim.returncode == -signal.SIGKILL
        with Client(external.address, set_as_default=False) as client:
            assert len(client.nthreads()) == 1  # Dask saw it go
        assert len(results) == len(local) == 24
        for ours, theirs in zip(results, local, strict=True):
            for name in ("pooled", "frames", "n_frames", "frames_total"):
                assert np.array_equal(getattr(ours, name), getattr(theirs, name))
