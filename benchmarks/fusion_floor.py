"""Is every fusion variant at least as good as its best single modality?

Generates two demo datasets by configuration alone (the ``demo_data`` pipeline,
real synthesised speech), each where the audio carries the intent and the text
does not help:

- ``text_unrelated``: every typed message is a vague note unrelated to the
  intent (``shares.text_uninformative: 1``, no text-only contacts);
- ``text_mostly_absent``: 70 % of the contacts have no typed message
  (``shares.audio_only: 0.7``), the others an informative one.

Then runs the default pipeline on each with ``modeling.seeds`` seeds and prints,
per fusion variant, its test macro-F1 minus ``audio_only``'s (mean over seeds
and the worst seed: issue #13 asks for >= -0.02) and the share of the matching
unimodal model's macro-F1 it keeps with the text or the audio blanked in every
test row (asks for >= 90 %), and where each presence pattern's rows go
(``routes``: the fused network or a unimodal model, modeling.unimodal_fallback).

Each run is a real Kedro session in a throw-away copy of the project (see
``tests/project_copy.py``). About 8 minutes per seed and dataset on 2 cores
with the defaults.

Usage (from the project root)::

    .venv/bin/python benchmarks/fusion_floor.py [--contacts 2000] [--seeds 3]
        [--datasets text_unrelated text_mostly_absent]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from tests.project_copy import (  # noqa: E402
    copy_project,
    latest_version,
    outputs,
    quiet_kedro_logging,
    run_session,
)

quiet_kedro_logging("fusion-floor")  # before TensorFlow and Kedro load

from multimodal_fusion.pipelines.evaluation.nodes import seed_gains  # noqa: E402

# demo_data.shares overrides: the audio carries the intent, the text does not help.
DATASETS = {
    "text_unrelated": {
        "text_uninformative": 1.0,
        "audio_uninformative": 0.0,
        "text_only": 0.0,
    },
    "text_mostly_absent": {
        "text_uninformative": 0.0,
        "audio_uninformative": 0.0,
        "text_only": 0.0,
        "audio_only": 0.7,
    },
}
# A blanked modality -> the unimodal model of the modality that is left.
LEFT = {"text": "audio_only", "audio": "text_only"}


def run_dataset(project: Path, shares: dict, contacts: int, seeds: int) -> dict:
    """Generates the dataset, runs ``__default__`` with ``seeds`` seeds;
    returns the run's metrics."""
    run_session(
        project,
        pipeline_name="demo_data",
        runtime_params={"demo_data": {"n_contacts": contacts, "shares": shares}},
    )
    run_session(project, runtime_params={"modeling": {"seeds": seeds}})
    return json.loads(
        latest_version(project / outputs() / "08_reporting/metrics.json").read_text()
    )


def floor_lines(name: str, metrics: dict) -> list[str]:
    """One line per fusion variant: the gap to audio_only (mean, worst seed)
    and what it keeps with a modality blanked."""
    audio = metrics["audio_only"]["seed_spread"]
    lines = [
        f"{name}: audio_only {audio['mean']:.3f} (seeds {audio['macro_f1']}), "
        f"text_only {metrics['text_only'].get('macro_f1')}"
    ]
    for variant, entry in metrics.items():
        if not isinstance(entry, dict) or "status" not in entry:
            continue  # not a variant (data counts, alignments, the run)
        if len(entry["modalities"]) < 2:  # noqa: PLR2004 - fusion variants only
            continue
        if entry.get("status") != "trained":
            lines.append(f"  {variant}: {entry.get('status')} ({entry.get('reason')})")
            continue
        gaps = seed_gains(entry, metrics["audio_only"])[1]
        kept = {
            modality: blanked["macro_f1"] / metrics[LEFT[modality]]["macro_f1"]
            for modality, blanked in entry.get("blanked", {}).items()
            if metrics[LEFT[modality]].get("macro_f1")
        }
        lines.append(
            f"  {variant}: gap to audio_only mean {np.mean(gaps):+.3f} worst "
            f"{min(gaps):+.3f}; kept without "
            + ", ".join(f"{m} {v:.0%}" for m, v in kept.items())
            + ("" if min(gaps) >= -0.02 else "  <- below the floor")  # noqa: PLR2004
        )
        routes = entry.get("routes", {}).get("routes", {})
        if routes:
            lines.append(
                "    routes: " + ", ".join(f"{p} -> {r}" for p, r in routes.items())
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS)
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fusion-floor-") as tmp:
        for name in args.datasets:
            start = time.perf_counter()
            project = copy_project(Path(tmp) / name)
            metrics = run_dataset(project, DATASETS[name], args.contacts, args.seeds)
            print("\n".join(floor_lines(name, metrics)), flush=True)
            print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
