"""Headless Chromium for browser checks: render a page (running its JavaScript)
and return the resulting DOM, optionally with a PNG screenshot of the same
render. Tests using it skip when Chromium is absent."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
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
    screenshot: Path | None = None,
) -> str:
    """The DOM of ``url`` after ``budget_ms`` of virtual time (scripts have run),
    in a ``window`` (width, height) viewport; with ``screenshot``, the same
    render is also saved there as a PNG."""
    extra = [f"--screenshot={screenshot}"] if screenshot else []
    result = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile / 'chromium'}",
            f"--window-size={window[0]},{window[1]}",
            f"--virtual-time-budget={budget_ms}",
            *extra,
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    return result.stdout


class _Flowchart(HTMLParser):
    """Collects kedro-viz's drawn nodes (``data-node-type`` and the label of
    each ``pipeline-node`` group) and its layer labels, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: list[tuple[str, str]] = []
        self.layers: list[str] = []
        self._node_type: str | None = None
        self._target: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "g" and "pipeline-node" in classes:
            self._node_type = attributes.get("data-node-type")
        elif tag == "text" and "pipeline-node__text" in classes and self._node_type:
            self._target = "node"
        elif tag == "li" and "pipeline-layer-name" in classes:
            self._target = "layer"

    def handle_data(self, data: str) -> None:
        if self._target == "node":
            self.nodes.append((self._node_type, data.strip()))
            self._node_type = None
        elif self._target == "layer":
            self.layers.append(data.strip())
        self._target = None


def kedro_viz_flowchart(dom: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The flowchart kedro-viz drew in ``dom``: its nodes as ``(type, label)``
    (``task``, ``data``, ``parameters``, ``modularPipeline``) and its layer
    labels from top to bottom."""
    parser = _Flowchart()
    parser.feed(dom)
    return parser.nodes, parser.layers
