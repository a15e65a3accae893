"""Building blocks of the self-contained HTML report: escaped tables, embedded
plotly figures (plotly.js inlined once), embedded audio. No network needed to
open the page."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.offline
import soundfile as sf

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .55rem; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
nav a { margin-right: 1rem; }
.plot { margin: 1rem 0; }
code, pre { background: #f6f6f6; }
pre { padding: .6rem; overflow-x: auto; font-size: .8rem; }
"""


def fmt(value: Any, digits: int = 4) -> str:
    """Formats a cell: floats to ``digits`` decimals, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        return f"{value:.{digits}f}"
    return str(value)


def table(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    """An HTML table; numbers right-aligned, every cell escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for value in row:
            numeric = isinstance(value, int | float | np.number) and not isinstance(
                value, bool
            )
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{html.escape(fmt(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def figure(fig: go.Figure, div_id: str) -> str:
    """A plotly figure as a div (plotly.js comes once, from :func:`page`)."""
    return (
        '<div class="plot">'
        + fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id)
        + "</div>"
    )


def audio_player(waveform: np.ndarray, sample_rate: int) -> str:
    """An ``<audio>`` element with the clip embedded as FLAC."""
    buffer = io.BytesIO()
    sf.write(buffer, waveform, sample_rate, format="FLAC")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f'<audio controls preload="none" src="data:audio/flac;base64,{data}"></audio>'
    )


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def page(title: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document: navigation, sections and inlined plotly.js."""
    nav = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in sections)
    plotly_js = plotly.offline.get_plotlyjs()
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
        f"<script>{plotly_js}</script></head><body>"
        f"<h1>{html.escape(title)}</h1><nav>{nav}</nav>"
        + "".join(section(a, t, b) for a, t, b in sections)
        + "</body></html>"
    )
