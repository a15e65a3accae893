"""The ``dask`` engine of :func:`multimodal_fusion.parallel.map_batches`.

Batches (not single items) are Dask tasks on a ``dask.distributed`` cluster: at
most two per worker thread are in flight, and results are yielded in input order
whatever worker finishes first. A killed worker's tasks are run again by Dask.
The function is shipped once (a task the batches depend on, copied to every
worker; Dask recomputes it if every worker holding it dies), each batch with its
slice of the items.

The cluster is the engine's ``address``; without one, the ``LocalCluster`` of
the Kedro run (:func:`run_cluster`, announced to every process of the run by
the ``MULTIMODAL_FUSION_DASK_SCHEDULER`` environment variable), or outside a run
a ``LocalCluster`` started and closed for the call. Needs the ``dask`` extra.

:func:`process_cluster` starts a cluster of separate processes on this machine
(``dask scheduler``, ``dask worker``): an external cluster to try the
``address`` path on, as the benchmark and the tests do.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

from multimodal_fusion.parallel import (
    IN_FLIGHT_PER_WORKER,
    Engine,
    prepare_worker,
)

# Dask sets up its loggers when distributed is first imported, after Kedro's
# logging configuration: warnings only, not a screen of INFO per run, here and
# in the worker processes started from here (which read the variable).
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
try:
    import dask

    dask.config.set({"logging.distributed": os.environ["DASK_LOGGING__DISTRIBUTED"]})
    import distributed  # noqa: F401
except ModuleNotFoundError as error:
    raise ModuleNotFoundError(
        "engine 'dask' needs the dask extra: pip install -e '.[dask]' (on the "
        "workers too), or set engine.name to local"
    ) from error

logger = logging.getLogger(__name__)

RUN_SCHEDULER = "MULTIMODAL_FUSION_DASK_SCHEDULER"
# Workers' statistical profiler (a stack sample every 10 ms) slowed 10k clips of
# feature extraction on a 2-worker LocalCluster by 6-20 % here: off in the
# clusters started here (an existing cluster keeps its own setting).
NO_PROFILER = {"distributed.worker.profile.enabled": False}


@contextmanager
def cluster(engine: Engine) -> Iterator[str]:
    """The scheduler address of ``engine``: its ``address``, or a
    ``LocalCluster`` started here and closed on exit (also on error)."""
    if engine.address:
        yield engine.address
        return
    from distributed import LocalCluster

    with (
        dask.config.set(NO_PROFILER),
        LocalCluster(
            n_workers=engine.n_workers,
            threads_per_worker=engine.threads_per_worker,
            processes=True,
            dashboard_address=engine.dashboard_address,
            silence_logs=logging.WARNING,
        ) as local,
    ):
        logger.info(
            "Dask LocalCluster: %d workers, scheduler %s%s",
            len(local.workers),
            local.scheduler_address,
            f", dashboard {local.dashboard_link}" if engine.dashboard_address else "",
        )
        yield local.scheduler_address


@contextmanager
def run_cluster(engine: Engine) -> Iterator[str]:
    """:func:`cluster`, announced to every ``dask`` engine without an address
    in this process and its children until exit."""
    previous = os.environ.get(RUN_SCHEDULER)
    with cluster(engine) as address:
        os.environ[RUN_SCHEDULER] = address
        try:
            yield address
        finally:
            if previous is None:
                os.environ.pop(RUN_SCHEDULER, None)
            else:
                os.environ[RUN_SCHEDULER] = previous


def map_bounds(
    func: Callable[[Sequence], Any],
    items: Sequence,
    bounds: list[tuple[int, int]],
    engine: Engine,
) -> Iterator[Any]:
    """Yields ``func(items[start:stop])`` for every bound, in order, computed on
    the engine's cluster."""
    from distributed import Client

    with ExitStack() as stack:
        address = engine.address or os.environ.get(RUN_SCHEDULER)
        if not address:
            address = stack.enter_context(cluster(engine))
        client = stack.enter_context(Client(address, set_as_default=False))
        client.wait_for_workers(1)
        threads = sum(client.nthreads().values())
        shipped = client.submit(_value, func, pure=False)
        # On every worker: tasks go where their inputs are, and all need it.
        client.replicate([shipped])
        todo = iter(bounds)
        pending = deque()

        def submit(bound: tuple[int, int]) -> None:
            pending.append(
                client.submit(
                    _run_batch, shipped, items[bound[0] : bound[1]], pure=False
                )
            )

        try:
            for bound in islice(todo, IN_FLIGHT_PER_WORKER * max(threads, 1)):
                submit(bound)
            while pending:
                result = pending.popleft().result()
                for bound in islice(todo, 1):
                    submit(bound)
                yield result
        finally:
            client.cancel([*pending, shipped])


def _value(value: Any) -> Any:
    return value


def _run_batch(func: Callable[[Sequence], Any], batch: Sequence) -> Any:
    prepare_worker()
    return func(batch)


@dataclass(frozen=True)
class ProcessCluster:
    """A running :func:`process_cluster`: its address and processes."""

    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]


@contextmanager
def process_cluster(
    n_workers: int = 2, *, nthreads: int = 1, timeout: float = 60
) -> Iterator[ProcessCluster]:
    """``dask scheduler`` and ``n_workers`` ``dask worker`` processes on
    127.0.0.1 (no nannies: a worker is one process; no dashboards), ready when
    entered, stopped on exit."""
    from distributed import Client

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "dask"]
    quiet = {
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
        "env": {**os.environ, "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"},
    }
    processes = [
        subprocess.Popen(
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port)]
            + ["--no-dashboard"],
            **quiet,
        )
    ]
    try:
        processes += [
            subprocess.Popen(
                [*dask, "worker", address, "--host", "127.0.0.1", "--no-nanny"]
                + ["--nthreads", str(nthreads), "--memory-limit", "0"]
                + ["--no-dashboard"],
                **quiet,
            )
            for _ in range(n_workers)
        ]
        with Client(address, timeout=timeout, set_as_default=False) as client:
            client.wait_for_workers(n_workers, timeout=timeout)
        yield ProcessCluster(address, processes[0], processes[1:])
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
