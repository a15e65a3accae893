"""Speed and memory of the feature extraction, measured side by side in one run.

Run from the project root (about 3 minutes on 2 cores; generated clips are
cached in --workdir):

    .venv/bin/python benchmarks/features.py
    .venv/bin/python benchmarks/features.py --sizes 1000 10000 --repeats 1

1. FSDD (``../shared/data/fsdd``, or generated clips when it is absent): the naive
   per-file librosa loop (``librosa.load(path, sr=16000)``, ``mfcc``, ``delta``,
   one process) and the project's extractor (the ``extract_audio_features`` node
   over lazily loaded clips, run by Kedro's ``SequentialRunner`` into its
   ``ArrayFolderDataset``, with the ``fsdd`` environment's parameters), repeated
   alternately; the medians give ``naive: N clips/s``, ``project: N clips/s`` and
   ``speedup: N.Nx``.
2. Scaling: 1k, 10k and 50k generated clips through the audio part of
   feature_extraction (extract, fit the standardizer, standardise): time and
   peak RSS per size.
3. Text: PII cleaning, then TF-IDF fit (80 %) and transform of 100k messages.

Every measurement runs in a fresh process, so its peak RSS is its own: ``main``
is the measuring process, ``workers`` the largest extraction worker (forked
workers share the main process's pages, so the two overlap). The machine may be
shared: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
FSDD = PROJECT.parent / "shared" / "data" / "fsdd"
BANKING77 = PROJECT.parent / "shared" / "data" / "banking77" / "manifest.csv"
AUDIO_NODES = (
    "extract_audio_features",
    "fit_audio_standardizer",
    "standardize_audio_features",
)


# --- measurements, each in its own process ---------------------------------


def _peak_rss_mb() -> dict[str, float]:
    main = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"rss_main_mb": round(main, 1), "rss_workers_mb": round(workers, 1)}


def measure_naive(folder: str) -> dict:
    """The per-file loop of the issue: decode + resample, MFCC, delta. BLAS runs
    single-threaded: on a busy machine its spinning threads make this loop up
    to 10x slower, so this is the loop's best case."""
    import librosa
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)

    def features(path):
        y, sr = librosa.load(path, sr=16000)
        mfcc = librosa.feature.mfcc(y=y, sr=sr)
        # delta's default width (9) needs 9 frames: shorter clips take the widest
        # odd width that fits, as the project's features always did.
        width = min(9, mfcc.shape[1] - (1 - mfcc.shape[1] % 2))
        return mfcc, librosa.feature.delta(mfcc, width=width) if width >= 3 else None

    files = sorted(Path(folder).rglob("*.wav"))
    for path in files[:20]:  # warm-up: imports and first-call costs
        features(path)
    start = time.perf_counter()
    for path in files:
        features(path)
    return {"clips": len(files), "seconds": time.perf_counter() - start}


def _parameters(env: str | None) -> dict:
    """The project's parameters in ``env`` (as ``kedro run --env env`` sees them)."""
    from kedro.config import OmegaConfigLoader

    from multimodal_fusion.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(str(PROJECT / "conf"), env=env, **CONFIG_LOADER_ARGS)
    return loader["parameters"]


def measure_project(
    folder: str, env: str | None, nodes: list[str], n_jobs: int | None
) -> dict:
    """The feature_extraction audio nodes in a real Kedro runner and catalog."""
    import pandas as pd
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from multimodal_fusion.datasets import ArrayFolderDataset, AudioFolderDataset
    from multimodal_fusion.pipelines.feature_extraction import create_pipeline

    params = _parameters(env)
    audio = {**params["feature_extraction"]["audio"], "n_jobs": n_jobs}
    ids = sorted(p.stem for p in Path(folder).rglob("*.wav"))
    contacts = pd.DataFrame({"id": ids, "has_audio": True})
    contacts["split"] = np.where(np.arange(len(ids)) % 5 == 0, "test", "train")
    out = Path(tempfile.mkdtemp(prefix="mmf-bench-"))
    catalog = DataCatalog(
        {
            "contacts": MemoryDataset(contacts),
            "clean_audio": AudioFolderDataset(path=folder, filename_suffix=".wav"),
            "params:feature_extraction.audio": MemoryDataset(audio),
            "params:data_processing.audio.sample_rate": MemoryDataset(
                params["data_processing"]["audio"]["sample_rate"]
            ),
            "raw_audio_features": ArrayFolderDataset(path=out / "raw"),
            "audio_features": ArrayFolderDataset(path=out / "standardised"),
        }
    )
    pipeline = create_pipeline()
    seconds = {}
    try:
        for name in nodes:
            start = time.perf_counter()
            SequentialRunner().run(pipeline.only_nodes(name), catalog)
            seconds[name] = time.perf_counter() - start
    finally:
        shutil.rmtree(out)
    return {"clips": len(ids), "seconds": sum(seconds.values()), "nodes": seconds}


def measure_text(n: int) -> dict:
    """PII cleaning, TF-IDF fit on the training share and transform, as the
    data_processing and feature_extraction nodes do it."""
    import pandas as pd

    from multimodal_fusion.pipelines.feature_extraction.nodes import (
        featurize_texts,
        fit_text_featurizer,
    )
    from multimodal_fusion.text import clean_text

    messages = _messages(n)
    params = _parameters(None)
    start = time.perf_counter()
    cleaned = [clean_text(m) for m in messages]
    clean_s = time.perf_counter() - start
    contacts = pd.DataFrame(
        {
            "id": [f"m{i:06d}" for i in range(n)],
            "text": cleaned,
            "has_text": True,
            "split": np.where(np.arange(n) % 5 == 0, "test", "train"),
        }
    )
    start = time.perf_counter()
    featurizer = fit_text_featurizer(contacts, params["feature_extraction"]["text"])
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    features = featurize_texts(contacts, featurizer)
    transform_s = time.perf_counter() - start
    return {
        "messages": n,
        "clean_s": clean_s,
        "fit_s": fit_s,
        "transform_s": transform_s,
        "vocabulary": int(features["tfidf"].shape[1]),
    }


def _messages(n: int) -> list[str]:
    """``n`` customer messages: Banking77 queries when present (else templates),
    with an order number, and PII in every third message."""
    rng = np.random.default_rng(0)
    if BANKING77.is_file():
        import pandas as pd

        base = pd.read_csv(BANKING77, dtype=str, keep_default_na=False)["text"]
        base = base.tolist()
    else:
        verbs = ["cannot find", "want to cancel", "was charged twice for", "lost"]
        nouns = ["my card", "the refund", "my last payment", "the transfer"]
        base = [f"I {v} {o}, please help" for v in verbs for o in nouns]
    pii = [" mail me at jo.doe{}@example.com", " call +44 20 7946 {:04d}", ""]
    return [
        base[i % len(base)]
        + f" (order {rng.integers(10**6)})"
        + pii[i % 3].format(rng.integers(10**4))
        for i in range(n)
    ]


def _child(args: argparse.Namespace) -> None:
    if args.measure == "naive":
        result = measure_naive(args.folder)
    elif args.measure == "text":
        result = measure_text(args.n)
    else:
        result = measure_project(args.folder, args.env, args.nodes, args.n_jobs)
    print(json.dumps({**result, **_peak_rss_mb()}))


# --- orchestration -------------------------------------------------------------


def _run(*argv: str) -> dict:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.setdefault("NUMBA_CACHE_DIR", str(PROJECT / ".cache" / "numba"))
    done = subprocess.run(
        [sys.executable, __file__, *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT,
        check=False,
    )
    if done.returncode:
        sys.exit(f"measurement {argv} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def generate_clips(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` FSDD-like clips (8 kHz, 16-bit WAV, 0.3-1.0 s: tones in noise),
    cached: an existing complete folder is reused."""
    import soundfile as sf

    marker = folder / f".complete-{n}"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rate = 8000
    for i in range(n):
        t = np.arange(int(rate * rng.uniform(0.3, 1.0))) / rate
        tone = np.sin(2 * np.pi * rng.uniform(150, 900) * t) * np.hanning(t.size)
        wave = 0.4 * tone + 0.02 * rng.standard_normal(t.size)
        sf.write(folder / f"g{i:06d}.wav", wave.astype(np.float32), rate, "PCM_16")
    marker.touch()
    return folder


def _subset(source: Path, folder: Path, n: int) -> Path:
    """A folder of symlinks to the first ``n`` clips of ``source``."""
    if (folder / f".complete-{n}").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path in sorted(source.glob("*.wav"))[:n]:
        (folder / path.name).symlink_to(path)
    (folder / f".complete-{n}").touch()
    return folder


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _mb(result: dict) -> str:
    return (
        f"peak RSS {result['rss_main_mb']:.0f} MB main, "
        f"{result['rss_workers_mb']:.0f} MB largest worker"
    )


def _mb_main(result: dict) -> str:
    return f"peak RSS {result['rss_main_mb']:.0f} MB"


def compare_on_fsdd(args: argparse.Namespace, workdir: Path) -> None:
    folder, env = FSDD / "recordings", "fsdd"
    if not folder.is_dir():
        print(f"({FSDD} absent: 3000 generated 8 kHz clips instead)")
        folder, env = generate_clips(workdir / "fsdd-like", 3000), "fsdd"
    print(f"== FSDD: {folder} ({args.repeats} alternating repeats, medians) ==")
    runs: dict[str, list[dict]] = {"naive": [], "project": [], "one": [], "16k": []}
    extract = ["extract_audio_features"]
    for _ in range(args.repeats):
        runs["naive"].append(_run("--measure", "naive", "--folder", str(folder)))
        for key, extra in (
            ("project", ["--env", env]),
            ("one", ["--env", env, "--n-jobs", "1"]),
            ("16k", []),  # base parameters: 16 kHz, every clip resampled
        ):
            runs[key].append(
                _run(
                    "--measure",
                    "project",
                    "--folder",
                    str(folder),
                    *extra,
                    "--nodes",
                    *extract,
                )
            )
    rate = {
        k: statistics.median(r["clips"] / r["seconds"] for r in v)
        for k, v in runs.items()
    }
    spread = {
        k: ", ".join(f"{r['clips'] / r['seconds']:.0f}" for r in v)
        for k, v in runs.items()
    }
    clips = runs["naive"][0]["clips"]
    print(f"naive: {rate['naive']:.0f} clips/s")
    print(
        f"  librosa.load(sr=16000) + mfcc + delta, one process, {clips} clips; "
        f"runs: {spread['naive']} clips/s; {_mb_main(runs['naive'][-1])}"
    )
    print(f"project: {rate['project']:.0f} clips/s")
    print(
        f"  extract_audio_features node, {args.jobs_label}, fsdd parameters (8 kHz "
        f"as recorded: no resampling), decode + log-mel frames + pooled MFCC/delta "
        f"statistics, streamed to disk; runs: {spread['project']} clips/s; "
        f"{_mb(runs['project'][-1])}"
    )
    print(f"speedup: {rate['project'] / rate['naive']:.1f}x")
    print(
        f"  same node, one process: {rate['one']:.0f} clips/s "
        f"({rate['one'] / rate['naive']:.1f}x naive); runs: {spread['one']}"
    )
    print(
        f"  same node, base parameters (16 kHz: every clip resampled, as the naive "
        f"loop does): {rate['16k']:.0f} clips/s ({rate['16k'] / rate['naive']:.1f}x "
        f"naive); runs: {spread['16k']}"
    )


def scaling(args: argparse.Namespace, workdir: Path) -> None:
    largest = max(args.sizes)
    print("== Scaling: generated 8 kHz clips, 0.3-1.0 s, base parameters ==")
    source = generate_clips(workdir / f"generated-{largest}", largest)
    results = {}
    for n in sorted(args.sizes):
        folder = source if n == largest else _subset(source, workdir / f"subset-{n}", n)
        result = _run(
            "--measure", "project", "--folder", str(folder), "--nodes", *AUDIO_NODES
        )
        results[n] = result
        nodes = result["nodes"]
        rate = n / result["seconds"]
        print(
            f"clips={n}: {result['seconds']:.2f} s ({rate:.0f} clips/s; "
            f"extract {nodes['extract_audio_features']:.2f} s, fit "
            f"{nodes['fit_audio_standardizer']:.2f} s, standardise "
            f"{nodes['standardize_audio_features']:.2f} s); {_mb(result)}"
        )
    smallest = min(results)
    per_clip = {n: r["seconds"] / n for n, r in results.items()}
    extract = {n: r["nodes"]["extract_audio_features"] / n for n, r in results.items()}
    print(
        f"time per clip at {largest} vs {smallest}: "
        f"{per_clip[largest] / per_clip[smallest]:.2f}x (all three nodes), "
        f"{extract[largest] / extract[smallest]:.2f}x (extraction)"
    )
    growth = {
        k: results[largest][k] - results[smallest][k]
        for k in ("rss_main_mb", "rss_workers_mb")
    }
    print(
        f"peak RSS growth {smallest} -> {largest} clips: "
        f"{growth['rss_main_mb']:+.0f} MB main, {growth['rss_workers_mb']:+.0f} MB "
        "largest worker"
    )


def text(args: argparse.Namespace) -> None:
    print(f"== Text: {args.messages} messages ==")
    r = _run("--measure", "text", "--n", str(args.messages))
    total = r["clean_s"] + r["fit_s"] + r["transform_s"]
    print(
        f"text: {r['messages']} messages in {total:.1f} s: PII cleaning "
        f"{r['clean_s']:.1f} s, TF-IDF fit (80 %) {r['fit_s']:.1f} s, transform "
        f"{r['transform_s']:.1f} s; {r['vocabulary']} features; "
        f"peak RSS {r['rss_main_mb']:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "multimodal-fusion-bench",
        help="cache of generated clips",
    )
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["fsdd", "scaling", "text"]
    )
    # Internal: one measurement in this process.
    parser.add_argument("--measure", choices=["naive", "project", "text"])
    parser.add_argument("--folder")
    parser.add_argument("--env")
    parser.add_argument("--nodes", nargs="*", default=list(AUDIO_NODES))
    parser.add_argument("--n-jobs", type=int)
    parser.add_argument("--n", type=int)
    args = parser.parse_args()
    if args.measure:
        _child(args)
        return
    from multimodal_fusion.parallel import available_cores

    args.jobs_label = f"n_jobs=null ({available_cores()} processes)"
    print(f"cores: {available_cores()}; load average (1, 5, 15 min) before: {_load()}")
    if "fsdd" not in args.skip:
        compare_on_fsdd(args, args.workdir)
    if "scaling" not in args.skip:
        scaling(args, args.workdir)
    if "text" not in args.skip:
        text(args)
    print(f"load average after: {_load()}")


if __name__ == "__main__":
    main()
