"""Ordered, memory-bounded parallel map of a function over batches of items.

Items are cut into consecutive batches; worker processes compute batches while
the caller consumes results in order, with at most two batches per worker in
flight, so memory does not grow with the number of items. The batches are the
same whatever the number of processes, and BLAS runs single-threaded in every
process, so results do not depend on ``n_jobs``.

Where the batches run is the :class:`Engine`: this machine's process pool
(``local``, the default) or a Dask cluster (``dask``, see
:mod:`multimodal_fusion.dask_engine`). The batches and their order are the same
on both, so are the results.
"""

from __future__ import annotations

import ctypes
import functools
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, fields
from itertools import islice
from typing import Any, TypeVar

from threadpoolctl import ThreadpoolController

T = TypeVar("T")
R = TypeVar("R")

IN_FLIGHT_PER_WORKER = 2
# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_worker: dict[str, Any] = {}


ENGINES = ("local", "dask")


@dataclass(frozen=True)
class Engine:
    """Where per-clip batches run (the ``engine`` parameter).

    Attributes:
        name: ``local`` (this machine's process pool, ``n_jobs`` processes) or
            ``dask``.
        address: Scheduler of an existing Dask cluster (``tcp://host:port``);
            without it, ``dask`` uses the cluster the run started (a
            ``LocalCluster``; see :class:`multimodal_fusion.hooks.EngineHooks`)
            or, outside a run, one started for the call.
        n_workers: Worker processes of a ``LocalCluster`` (null: every core).
        threads_per_worker: Threads per ``LocalCluster`` worker.
        dashboard_address: Where a ``LocalCluster`` serves its dashboard
            (``:8787``; null: no dashboard).
    """

    name: str = "local"
    address: str | None = None
    n_workers: int | None = None
    threads_per_worker: int = 1
    dashboard_address: str | None = None

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise ValueError(
                f"engine.name must be one of {', '.join(ENGINES)}, got {self.name!r}"
            )

    @classmethod
    def of(cls, spec: Engine | Mapping[str, Any] | None) -> Engine:
        """The engine of a parameters mapping (``None``: ``local``).

        Raises:
            ValueError: for an unknown name or key.
        """
        if isinstance(spec, Engine):
            return spec
        spec = dict(spec or {})
        unknown = set(spec) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown engine setting(s): {', '.join(sorted(unknown))}")
        return cls(**spec)


def available_cores() -> int:
    """CPU cores this process may run on (affinity and cgroup aware where the
    platform reports it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_n_jobs(n_jobs: int | None) -> int:
    """``None`` → every available core; otherwise a positive process count.

    Raises:
        ValueError: for zero or a negative count.
    """
    if n_jobs is None:
        return available_cores()
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer or null, got {n_jobs}")
    return int(n_jobs)


def map_batches(
    func: Callable[[Sequence[T]], R],
    items: Sequence[T],
    *,
    batch_size: int,
    n_jobs: int | None = None,
    engine: Engine | Mapping[str, Any] | None = None,
) -> Iterator[R]:
    """Yields ``func(batch)`` for consecutive batches of ``items``, in order.

    Args:
        func: Picklable function of one batch (a slice of ``items``).
        items: The inputs. Worker processes receive them once, when they start
            (without pickling under the ``fork`` start method, Linux's default).
        batch_size: Items per batch.
        n_jobs: Worker processes of the local engine; ``None`` for every
            available core. With one process, or a single batch, everything runs
            in this process.
        engine: Where batches run (an :class:`Engine` or its parameters);
            ``None`` for the local engine.

    Raises:
        ValueError: for a batch size or process count below 1, or a bad engine.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    engine = Engine.of(engine)
    bounds = [
        (a, min(a + batch_size, len(items))) for a in range(0, len(items), batch_size)
    ]
    if engine.name == "dask" and bounds:
        from multimodal_fusion.dask_engine import map_bounds

        yield from map_bounds(func, items, bounds, engine)
        return
    n_workers = min(resolve_n_jobs(n_jobs), len(bounds))
    if n_workers <= 1:
        for start, stop in bounds:
            with _threadpools().limit(limits=1):
                result = func(items[start:stop])
            yield result
        return
    pool = ProcessPoolExecutor(
        n_workers,
        mp_context=multiprocessing.get_context(),
        initializer=_start_worker,
        initargs=(func, items),
    )
    try:
        todo = iter(bounds)
        pending: deque[Future] = deque(
            pool.submit(_run_batch, *bound)
            for bound in islice(todo, IN_FLIGHT_PER_WORKER * n_workers)
        )
        while pending:
            result = pending.popleft().result()
            for bound in islice(todo, 1):
                pending.append(pool.submit(_run_batch, *bound))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@functools.cache
def _threadpools() -> ThreadpoolController:
    """The native thread pools (BLAS, OpenMP) loaded in this process."""
    return ThreadpoolController()


def _start_worker(func: Callable, items: Sequence) -> None:
    _prepare_process()
    _worker["func"], _worker["items"] = func, items


def _prepare_process() -> None:
    """Single-threaded BLAS, freed memory kept for reuse."""
    _threadpools().limit(limits=1)
    _reuse_freed_memory()


@functools.cache
def prepare_worker() -> None:
    """:func:`_prepare_process` once per process: for workers that this module
    does not start (Dask's)."""
    _prepare_process()


def _reuse_freed_memory() -> None:
    """Makes glibc keep freed memory for reuse instead of returning it to the
    system. A worker allocates and frees the same large temporaries every
    batch; the page faults on fresh pages cost about a fifth of its time
    (measured on feature extraction). No-op without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(_M_TRIM_THRESHOLD, 512 * 2**20)
    libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)  # glibc's largest


def _run_batch(start: int, stop: int) -> Any:
    return _worker["func"](_worker["items"][start:stop])
