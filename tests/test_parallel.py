import os

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from multimodal_fusion.parallel import (
    Engine,
    available_cores,
    map_batches,
    resolve_n_jobs,
)


def _describe(batch):
    """Module-level, so worker processes can run it."""
    blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return os.getpid(), list(batch), float(np.sum(np.square(batch))), blas


def _fail_on_seven(batch):
    if 7 in batch:
        raise ValueError("item 7 is broken")
    return list(batch)


def test_batches_come_back_in_order_with_the_same_results_in_workers():
    items = np.arange(23)
    single = list(map_batches(_describe, items, batch_size=4, n_jobs=1))
    pooled = list(map_batches(_describe, items, batch_size=4, n_jobs=2))
    assert [r[1] for r in single] == [r[1] for r in pooled]
    assert [r[1] for r in single][-1] == [20, 21, 22]
    assert [r[2] for r in single] == [r[2] for r in pooled]
    assert {r[0] for r in single} == {os.getpid()}
    assert os.getpid() not in {r[0] for r in pooled}
    # BLAS runs single-threaded wherever a batch is computed.
    assert all(threads == [1] * len(threads) for *_, threads in single + pooled)


def test_a_worker_error_reaches_the_caller():
    with pytest.raises(ValueError, match="item 7 is broken"):
        list(map_batches(_fail_on_seven, list(range(20)), batch_size=3, n_jobs=2))


def test_closing_early_stops_the_workers():
    batches = map_batches(_describe, np.arange(1000), batch_size=5, n_jobs=2)
    first = next(batches)
    batches.close()  # shuts the pool down, no hang
    assert first[1] == [0, 1, 2, 3, 4]


def test_a_single_batch_or_no_items_runs_in_this_process():
    (result,) = map_batches(_describe, [1, 2], batch_size=8, n_jobs=2)
    assert result[0] == os.getpid()
    assert list(map_batches(_describe, [], batch_size=8, n_jobs=2)) == []


def test_sizes_are_validated():
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        list(map_batches(_describe, [1], batch_size=0))
    with pytest.raises(ValueError, match="n_jobs must be a positive"):
        resolve_n_jobs(0)
    assert resolve_n_jobs(None) == available_cores() >= 1


def test_engines_are_read_from_their_parameters():
    assert Engine.of(None) == Engine() == Engine.of({"name": "local"})
    dask = Engine.of({"name": "dask", "address": None, "n_workers": 2})
    assert (dask.name, dask.n_workers, dask.threads_per_worker) == ("dask", 2, 1)
    with pytest.raises(ValueError, match="engine.name must be one of local, dask"):
        Engine.of({"name": "spark"})
    with pytest.raises(ValueError, match="unknown engine setting"):
        Engine.of({"name": "dask", "workers": 2})
