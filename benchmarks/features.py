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


def _usage() -> dict[str, float]:
    """Peak RSS (MB) of this process and of its largest child, and CPU seconds
    of both (user + system)."""
    main = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "rss_main_mb": round(main.ru_maxrss / 1024, 1),
        "rss_workers_mb": round(workers.ru_maxrss / 1024, 1),
        "cpu_s": main.ru_utime + main.ru_stime + workers.ru_utime + workers.ru_stime,
    }


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
    start, cpu = time.perf_counter(), _usage()["cpu_s"]
    for path in files:
        features(path)
    return {
        "clips": len(files),
        "seconds": time.perf_counter() - start,
        "cpu_s": _usage()["cpu_s"] - cpu,
    }


def _parameters(env: str | None) -> dict:
    """The project's parameters in ``env`` (as ``kedro run --env env`` sees them)."""
    from multimodal_fusion.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

    loader = CONFIG_LOADER_CLASS(str(PROJECT / "conf"), env=env, **CONFIG_LOADER_ARGS)
    return loader["parameters"]


def measure_project(
    folder: str,
    env: str | None,
    nodes: list[str],
    n_jobs: int | None,
    *,
    engine: dict | None = None,
    out: Path | None = None,
) -> dict:
    """The feature_extraction audio nodes in a real Kedro runner and catalog, on
    ``engine`` (the ``engine`` parameters of ``env`` when None); the features
    are written to ``out`` (kept), or to a temporary folder (removed)."""
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
    keep = out is not None
    out = out or Path(tempfile.mkdtemp(prefix="mmf-bench-"))
    catalog = DataCatalog(
        {
            "contacts": MemoryDataset(contacts),
            "clean_audio": AudioFolderDataset(path=folder, filename_suffix=".wav"),
            "params:feature_extraction.audio": MemoryDataset(audio),
            "params:data_processing.audio.sample_rate": MemoryDataset(
                params["data_processing"]["audio"]["sample_rate"]
            ),
            "params:engine": MemoryDataset(engine or params["engine"]),
            "raw_audio_features": ArrayFolderDataset(path=out / "raw"),
            "audio_features": ArrayFolderDataset(path=out / "standardised"),
        }
    )
    pipeline = create_pipeline()
    seconds = {}
    cpu = _usage()["cpu_s"]
    try:
        for name in nodes:
            start = time.perf_counter()
            SequentialRunner().run(pipeline.only_nodes(name), catalog)
            seconds[name] = time.perf_counter() - start
    finally:
        if not keep:
            shutil.rmtree(out)
    return {
        "clips": len(ids),
        "seconds": sum(seconds.values()),
        "nodes": seconds,
        "cpu_s": _usage()["cpu_s"] - cpu,
    }


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
    usage = _usage()
    print(json.dumps({**usage, **result}))


# --- orchestration -------------------------------------------------------------


def _run(*argv: str, script: str = __file__) -> dict:
    """The JSON last printed by ``script`` run with ``argv`` in a fresh process."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.setdefault("NUMBA_CACHE_DIR", str(PROJECT / ".cache" / "numba"))
    done = subprocess.run(
        [sys.executable, script, *argv],
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
    """A folder with copies of the first ``n`` clips of ``source`` (copies, not
    symlinks: the audio folder refuses links that lead outside it)."""
    if (folder / f".copies-{n}").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path in sorted(source.glob("*.wav"))[:n]:
        shutil.copyfile(path, folder / path.name)
    (folder / f".copies-{n}").touch()
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


def _rate(runs: list[dict]) -> tuple[float, str]:
    """Median clips/s over runs, and every run's figure."""
    rates = [r["clips"] / r["seconds"] for r in runs]
    return statistics.median(rates), ", ".join(f"{x:.0f}" for x in rates)


def _cpu(runs: list[dict]) -> str:
    per_clip = statistics.median(1e6 * r["cpu_s"] / r["clips"] for r in runs)
    return f"CPU {per_clip:.0f} us/clip"


def compare_on_fsdd(args: argparse.Namespace, workdir: Path) -> None:
    folder = FSDD / "recordings"
    if not folder.is_dir():
        print(f"({FSDD} absent: {args.clips} generated 8 kHz clips instead)")
        folder = generate_clips(workdir / f"fsdd-like-{args.clips}", args.clips)
    elif args.clips < 3000:
        folder = _subset(folder, workdir / f"fsdd-{args.clips}", args.clips)
    print(f"== FSDD: {folder} ({args.repeats} alternating repeats, medians) ==")
    variants = {
        "project": ["--env", "fsdd"],
        "one process": ["--env", "fsdd", "--n-jobs", "1"],
        "16 kHz": [],  # base parameters: every 8 kHz clip is resampled
    }
    runs: dict[str, list[dict]] = {"naive": [], **{k: [] for k in variants}}
    for _ in range(args.repeats):
        runs["naive"].append(_run("--measure", "naive", "--folder", str(folder)))
        for key, extra in variants.items():
            runs[key].append(
                _run("--measure", "project", "--folder", str(folder), *extra)
            )
    rate = {key: _rate(r) for key, r in runs.items()}
    naive = rate["naive"][0]
    clips = runs["naive"][0]["clips"]
    print(f"naive: {naive:.0f} clips/s")
    print(
        f"  librosa.load(sr=16000) + mfcc + delta, one process, {clips} clips; "
        f"runs: {rate['naive'][1]}; {_cpu(runs['naive'])}; "
        f"{_mb_main(runs['naive'][-1])}"
    )
    print(f"project: {rate['project'][0]:.0f} clips/s")
    print(
        f"  extract_audio_features node over AudioFolderDataset's lazy clips, "
        f"streamed to an ArrayFolderDataset by SequentialRunner; {args.jobs_label}; "
        f"fsdd parameters (8 kHz as recorded: no resampling); runs: "
        f"{rate['project'][1]}; {_cpu(runs['project'])}; {_mb(runs['project'][-1])}"
    )
    print(f"speedup: {rate['project'][0] / naive:.1f}x")
    for key, label in (
        ("one process", "n_jobs=1"),
        ("16 kHz", "base parameters, 16 kHz: every clip resampled like the naive loop"),
    ):
        print(
            f"  same node, {label}: {rate[key][0]:.0f} clips/s "
            f"({rate[key][0] / naive:.1f}x naive); runs: {rate[key][1]}; "
            f"{_cpu(runs[key])}"
        )


def scaling(args: argparse.Namespace, workdir: Path) -> None:
    largest = max(args.sizes)
    print(
        "== Scaling: generated 8 kHz clips of 0.3-1.0 s, base parameters (16 kHz), "
        "extract + fit standardizer + standardise =="
    )
    source = generate_clips(workdir / f"generated-{largest}", largest)
    results = {}
    for n in sorted(args.sizes):
        folder = source if n == largest else _subset(source, workdir / f"subset-{n}", n)
        result = _run(
            "--measure", "project", "--folder", str(folder), "--nodes", *AUDIO_NODES
        )
        results[n] = result
        seconds = result["nodes"]
        print(
            f"clips={n}: {result['seconds']:.2f} s ({n / result['seconds']:.0f} "
            f"clips/s; extract {seconds['extract_audio_features']:.2f} s, fit "
            f"{seconds['fit_audio_standardizer']:.2f} s, standardise "
            f"{seconds['standardize_audio_features']:.2f} s); {_cpu([result])}; "
            f"{_mb(result)}"
        )
    smallest = min(results)

    def per_clip(key: str) -> float:
        return (results[largest][key] / largest) / (results[smallest][key] / smallest)

    print(
        f"time per clip, {largest} vs {smallest} clips: {per_clip('seconds'):.2f}x "
        f"wall, {per_clip('cpu_s'):.2f}x CPU (1.00 = linear)"
    )
    # Start-up (processes, imports, catalog) is a fixed cost that makes small runs
    # look slow per clip; the cost of each added clip shows whether time is linear.
    sizes = sorted(results)
    steps = list(zip(sizes, sizes[1:], strict=False))
    marginal = [
        (results[b]["seconds"] - results[a]["seconds"]) / (b - a) * 1e6
        for a, b in steps
    ]
    if len(marginal) > 1:
        print(
            "time per added clip: "
            + ", ".join(
                f"{a}->{b} {us:.0f} us"
                for (a, b), us in zip(steps, marginal, strict=True)
            )
            + f" (last/first {marginal[-1] / marginal[0]:.2f}; 1.00 = linear)"
        )
    growth = {
        k: results[largest][k] - results[smallest][k]
        for k in ("rss_main_mb", "rss_workers_mb")
    }
    print(
        f"peak RSS growth, {smallest} -> {largest} clips: "
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
    parser.add_argument(
        "--clips", type=int, default=3000, help="FSDD clips compared (at most 3000)"
    )
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
    parser.add_argument("--nodes", nargs="*", default=["extract_audio_features"])
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
