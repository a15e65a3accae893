"""Headless Chromium for browser checks: render a page (running its JavaScript)
and return the resulting DOM. Tests using it skip when Chromium is absent."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

requires_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"
)


def render_dom(
    url: str,
    profile: Path,
    *,
    budget_ms: int = 20000,
    window: tuple[int, int] = (1400, 1000),
) -> str:
    """The DOM of ``url`` after ``budget_ms`` of virtual time (scripts have run),
    in a ``window`` (width, height) viewport."""
    result = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile / 'chromium'}",
            f"--window-size={window[0]},{window[1]}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    return result.stdout
