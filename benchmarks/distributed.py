"""Audio feature extraction on each engine: the local process pool, a Dask
LocalCluster with 1 and 2 workers, and an external Dask cluster (``dask
scheduler`` + 2 ``dask worker`` processes), on the same generated clips.

Each measurement runs the ``extract_audio_features`` node in a real Kedro
runner and catalog, in a fresh process, and prints::

    engine <name> workers=<n>: clips=<N> seconds=<x> clips_per_s=<x> peak_rss_mb=<x>

then ``identical: yes|no`` (every engine's features byte for byte equal to the
local engine's), the Dask overhead and the 2-worker speed-up. ``seconds`` is the
node's time; starting a cluster and importing the project on its workers (the
run's fixed cost) is printed apart. ``peak_rss_mb`` is the peak RSS of the
process running the node (and, for a LocalCluster, its scheduler) plus that of
the largest worker.

    .venv/bin/python benchmarks/distributed.py               # 50,000 clips
    .venv/bin/python benchmarks/distributed.py --clips 2000

Clips are generated once (8 kHz tones in noise, 0.3-1.0 s) and cached in
``--workdir`` (``/tmp/multimodal-fusion-bench``).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This file's name would hide the `distributed` package from its own process.
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != HERE]
_spec = importlib.util.spec_from_file_location("features", HERE / "features.py")
features = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(features)
NODE = "extract_audio_features"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _largest_worker_mb(engine: dict) -> float:
    """Peak RSS of the largest worker: Dask's asked, the pool's from the kernel
    (its workers have exited)."""
    if engine["name"] == "local":
        return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    from distributed import Client

    from multimodal_fusion.dask_engine import RUN_SCHEDULER

    address = engine.get("address") or os.environ[RUN_SCHEDULER]
    with Client(address, set_as_default=False) as client:
        return max(client.run(_peak_mb).values())


def _warm_up(folder: str, engine: dict | None = None) -> None:
    """Features of a few clips, here or on ``engine``'s workers: first-call
    costs (imports, caches, connections)."""
    from multimodal_fusion.datasets import AudioFolderDataset
    from multimodal_fusion.featurization import audio_extractor
    from multimodal_fusion.parallel import map_batches

    params = features._parameters(None)
    extractor = audio_extractor(
        params["feature_extraction"]["audio"],
        params["data_processing"]["audio"]["sample_rate"],
    )
    loaders = AudioFolderDataset(path=folder, filename_suffix=".wav").load()
    extract = functools.partial(extractor.load_and_extract, loaders)
    list(map_batches(extract, sorted(loaders)[:16], batch_size=2, engine=engine))


def measure(folder: str, engine: dict, out: str) -> dict:
    """The node on ``engine``, its LocalCluster (if any) started first; this
    process (whose pool workers fork from it) and the Dask workers are warmed up
    before the clock starts."""
    from multimodal_fusion.dask_engine import run_cluster
    from multimodal_fusion.parallel import Engine

    _warm_up(folder)
    with ExitStack() as stack:
        start = time.perf_counter()
        if engine["name"] == "dask":
            if not engine.get("address"):
                stack.enter_context(run_cluster(Engine.of(engine)))
            _warm_up(folder, engine)
        startup = time.perf_counter() - start
        result = features.measure_project(
            folder,
            None,
            [NODE],
            engine.pop("n_jobs", None),
            engine=engine,
            out=Path(out),
        )
        worker_mb = _largest_worker_mb(engine)
    return {
        **result,
        "startup_s": startup,
        "peak_rss_mb": _peak_mb() + worker_mb,
    }


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _line(name: str, workers: int, result: dict) -> str:
    seconds = result["seconds"]
    return (
        f"engine {name} workers={workers}: clips={result['clips']} "
        f"seconds={seconds:.2f} clips_per_s={result['clips'] / seconds:.0f} "
        f"peak_rss_mb={result['peak_rss_mb']:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=50_000)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "multimodal-fusion-bench",
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # a child process: one measurement
        print(json.dumps(measure(args.folder, json.loads(args.measure), args.out)))
        return

    from multimodal_fusion.dask_engine import process_cluster

    # The external workers are this process's children: the measurements' cache.
    os.environ.setdefault("NUMBA_CACHE_DIR", str(HERE.parent / ".cache" / "numba"))
    folder = features.generate_clips(
        args.workdir / f"generated-{args.clips}", args.clips
    )
    outputs = Path(tempfile.mkdtemp(prefix="mmf-distributed-"))
    print(f"== {args.clips} generated clips; load average {features._load()} ==")
    runs = {}
    try:
        with process_cluster(2) as external:
            engines = {
                ("local", 1): {"name": "local", "n_jobs": 1},
                ("local", 2): {"name": "local", "n_jobs": 2},
                ("dask-local", 1): {"name": "dask", "n_workers": 1},
                ("dask-local", 2): {"name": "dask", "n_workers": 2},
                ("dask-external", 2): {"name": "dask", "address": external.address},
            }
            for (name, workers), engine in engines.items():
                out = outputs / f"{name}-{workers}"
                result = features._run(
                    f"--measure={json.dumps(engine)}",
                    f"--folder={folder}",
                    f"--out={out}",
                    script=__file__,
                )
                runs[name, workers] = result, _digest(out)
                print(_line(name, workers, result), flush=True)
                shutil.rmtree(out)
    finally:
        shutil.rmtree(outputs, ignore_errors=True)
    local, reference = runs["local", 2]
    identical = all(digest == reference for _, digest in runs.values())
    print(f"identical: {'yes' if identical else 'no'}")
    one, two = runs["dask-local", 1][0], runs["dask-local", 2][0]
    for name in ("dask-local", "dask-external"):
        overhead = runs[name, 2][0]["seconds"] / local["seconds"] - 1
        print(f"{name} 2 workers vs local: {100 * overhead:+.1f} % time")
    print(f"dask-local 2 workers vs 1: {one['seconds'] / two['seconds']:.2f}x")
    local_one = runs["local", 1][0]
    print(f"local 2 workers vs 1: {local_one['seconds'] / local['seconds']:.2f}x")
    print(
        "start-up, not in seconds above (cluster, warm-up of the workers): "
        + ", ".join(
            f"{name} workers={workers} {result['startup_s']:.1f} s"
            for (name, workers), (result, _) in runs.items()
            if not name.startswith("local")
        )
    )
    print(f"load average after: {features._load()}")


if __name__ == "__main__":
    sys.exit(main())
