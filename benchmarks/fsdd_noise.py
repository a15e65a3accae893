"""``audio_only`` on real recordings under white noise: the Free Spoken Digit
Dataset's official split, clean and at 30, 20 and 10 dB SNR, and leave one
speaker out.

The official split is one run of the default pipeline in the ``fsdd``
environment whose robustness sweep is white noise at the given SNRs (mixed into
the prepared test clips, as in every run); the macro-F1 of ``audio_only`` at each
level comes from the run's ``metrics``. Leave-one-speaker-out holds out each
speaker in turn (see ``fsdd_leave_one_speaker_out.py``) and averages
``audio_only``'s test macro-F1. Runs happen in throw-away project copies.

Usage (from the project root; the official split takes a few minutes on 2
cores, each held-out speaker as long again)::

    .venv/bin/python benchmarks/fsdd_noise.py [--data-root ../shared/data/fsdd] \\
        [--snr-db 30 20 10] [--speakers george ... | --no-loso] [--params JSON]

It prints one line per condition, e.g. ``official clean: macro-F1 0.997``,
``official 30 dB: macro-F1 0.990 (loss 0.007)``, ``loso george: macro-F1 0.91``
and ``loso mean: macro-F1 0.88``. ``--params`` adds runtime parameters to every
run (say ``{"feature_extraction": {"audio": {"floor_db": 80}}}`` for the features
before the noise fix).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fsdd_leave_one_speaker_out import (  # noqa: E402 - after the path
    PROJECT,
    SPEAKERS,
    copy_project,
    run_fsdd,
    speaker_held_out,
)

VARIANT = "audio_only"


def merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in, nested dicts key by key."""
    merged = dict(base)
    for key, value in extra.items():
        nested = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = merge(merged[key], value) if nested else value
    return merged


def noise_sweep(snr_db: list[float]) -> dict:
    """Runtime parameters of a robustness sweep of white noise only."""
    return {
        "robustness": {
            "noise": ["white_noise"],
            "snr_db": snr_db,
            "text": [],
            "missing": [],
        }
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-root", type=Path, default=PROJECT.parent / "shared/data/fsdd"
    )
    parser.add_argument("--snr-db", nargs="+", type=float, default=[30, 20, 10])
    parser.add_argument("--speakers", nargs="+", default=list(SPEAKERS))
    parser.add_argument("--no-loso", action="store_true")
    parser.add_argument("--params", type=json.loads, default={})
    args = parser.parse_args()
    data_root = args.data_root.resolve()
    if not (data_root / "manifest.csv").is_file():
        print(f"FSDD not found at {data_root}: nothing to measure", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fsdd-noise-") as tmp:
        start = time.perf_counter()
        metrics = run_fsdd(
            copy_project(Path(tmp) / "official"),
            data_root,
            merge(noise_sweep(args.snr_db), args.params),
        )[VARIANT]
        curve = metrics["robustness"]["white_noise"]
        clean = curve["macro_f1"][0]
        print(
            f"official clean: macro-F1 {clean:.3f} "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
        levels = zip(curve["levels"][1:], curve["macro_f1"][1:], strict=True)
        for level, score in levels:
            loss = clean - score
            print(f"official {level:g} dB: macro-F1 {score:.3f} (loss {loss:.3f})")
        if args.no_loso:
            return 0
        scores = []
        for speaker in args.speakers:
            start = time.perf_counter()
            held_out = run_fsdd(
                copy_project(Path(tmp) / speaker),
                data_root,
                merge(speaker_held_out(speaker), args.params),
            )[VARIANT]
            scores.append(held_out["macro_f1"])
            print(
                f"loso {speaker}: macro-F1 {scores[-1]:.3f} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
        print(f"loso mean: macro-F1 {sum(scores) / len(scores):.3f}")
        print(f"loso worst: macro-F1 {min(scores):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
