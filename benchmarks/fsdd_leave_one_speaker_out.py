"""Leave-one-speaker-out accuracy on the Free Spoken Digit Dataset.

For each of the six speakers, runs the project's default pipeline in the
``fsdd`` environment with that speaker's recordings as the test split
(``data_processing.split.test_ids_matching=_<speaker>_``; validation is carved
from the other five speakers), then reads the run's ``metrics`` and prints the
test accuracy of the model chosen on validation (``best_model``).

Each run is a real Kedro session in a throw-away copy of the project
(``pyproject.toml`` and ``conf/``, see ``tests/project_copy.py``), so the
project's own ``data/`` is untouched; the package comes from the installed
(editable) ``multimodal_fusion``.

Usage (from the project root, about a minute per speaker on 2 cores)::

    .venv/bin/python benchmarks/fsdd_leave_one_speaker_out.py \\
        [--data-root ../shared/data/fsdd] [--speakers george jackson ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from tests.project_copy import (  # noqa: E402
    copy_project,
    quiet_kedro_logging,
    run_session,
)

quiet_kedro_logging("fsdd-loso")  # six whole runs' INFO logs would bury the results

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


def run_fsdd(project: Path, data_root: Path, params: dict | None = None) -> dict:
    """Runs ``__default__`` in the ``fsdd`` environment with the runtime
    ``params``; returns the run's metrics."""
    run_session(
        project,
        env="fsdd",
        runtime_params={"data_root": str(data_root), **(params or {})},
    )
    folder = project / "data/fsdd/08_reporting/metrics.json"  # conf/base/globals.yml
    latest = sorted(p for p in folder.iterdir() if p.is_dir())[-1]
    return json.loads((latest / "metrics.json").read_text())


def speaker_held_out(speaker: str) -> dict:
    """The runtime parameters that make ``speaker``'s recordings the test split."""
    return {"data_processing": {"split": {"test_ids_matching": f"_{speaker}_"}}}


def run_speaker(project: Path, data_root: Path, speaker: str) -> dict:
    """Runs ``__default__`` with ``speaker`` held out; returns its metrics."""
    return run_fsdd(project, data_root, speaker_held_out(speaker))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-root", type=Path, default=PROJECT.parent / "shared/data/fsdd"
    )
    parser.add_argument("--speakers", nargs="+", default=list(SPEAKERS))
    args = parser.parse_args()
    data_root = args.data_root.resolve()
    if not (data_root / "manifest.csv").is_file():
        print(f"FSDD not found at {data_root}: nothing to measure", file=sys.stderr)
        return 2
    accuracies = {}
    with tempfile.TemporaryDirectory(prefix="fsdd-loso-") as tmp:
        for speaker in args.speakers:
            project = copy_project(Path(tmp) / speaker)
            start = time.perf_counter()
            metrics = run_speaker(project, data_root, speaker)
            best = metrics["best_model"]
            accuracies[speaker] = metrics[best]["accuracy"]
            print(
                f"{speaker:>10}: {accuracies[speaker]:.3f} accuracy ({best}, "
                f"{metrics[best]['split_sizes']['test']} test clips, "
                f"{time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    values = list(accuracies.values())
    print(f"{'mean':>10}: {sum(values) / len(values):.3f}")
    print(f"{'worst':>10}: {min(values):.3f} ({min(accuracies, key=accuracies.get)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
