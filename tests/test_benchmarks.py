"""The benchmark script runs end to end at toy sizes and prints the lines a
script reads. Speed itself is measured by running it, not asserted here."""

import re
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "benchmarks" / "features.py"


def test_benchmark_prints_the_figures_a_script_reads(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--repeats=1",
            "--clips=40",
            "--sizes",
            "30",
            "60",
            "--messages=300",
            f"--workdir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    naive = float(re.search(r"^naive: ([\d.]+) clips/s$", out, re.M).group(1))
    project = float(re.search(r"^project: ([\d.]+) clips/s$", out, re.M).group(1))
    speedup = float(re.search(r"^speedup: ([\d.]+)x$", out, re.M).group(1))
    assert naive > 0 and project > 0
    # Printed rounded: the speedup to 0.1, the rates to 1 clip/s.
    assert speedup == pytest.approx(project / naive, rel=0.02, abs=0.06)
    assert re.search(r"^clips=30: .* peak RSS \d+ MB main", out, re.M)
    assert re.search(r"^clips=60: ", out, re.M)
    assert "peak RSS growth, 30 -> 60 clips" in out
    assert re.search(r"^text: 300 messages in [\d.]+ s", out, re.M)
