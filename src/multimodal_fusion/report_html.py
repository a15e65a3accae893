"""Building blocks of the self-contained HTML report: escaped tables, embedded
plotly figures (plotly.js inlined once), embedded audio and images, the colour
of each model variant and human units. No network needed to open the page."""

from __future__ import annotations

import base64
import html
import io
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.offline
import soundfile as sf

from multimodal_fusion.variants import VARIANT_INPUTS

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
.answer { border: 2px solid #3f9a3a; border-radius: 6px; padding: .4rem 1rem;
          margin: .8rem 0; background: #f5faf4; }
.answer p { margin: .35rem 0; }
.answer .use { font-size: 1.25rem; }
.caveat { color: #8a4b00; }
.wide { overflow-x: auto; max-width: 100%; }
.wide table { font-size: .8rem; }
details summary { cursor: pointer; }
img.matrix { max-width: 100%; height: auto; }
"""

# One colour per model variant in every plot (in the order of VARIANT_INPUTS;
# other names by a stable hash). Mid-tone colours: WCAG contrast of at least 3
# against white and against a dark background (kedro-viz's dark theme).
PALETTE = (
    "#4e79a7",  # blue
    "#d4700a",  # orange
    "#3f9a3a",  # green
    "#e15759",  # red
    "#8a7fd6",  # violet
    "#139aa8",  # teal
    "#a0785a",  # brown
    "#cf5a93",  # pink
    "#8c8c8c",  # grey
    "#7a8a1c",  # olive
    "#5f87c9",  # light blue
    "#c0622f",  # rust
)


def variant_colour(name: str) -> str:
    """The colour of a model variant, the same in every plot of every run."""
    known = list(VARIANT_INPUTS)
    if name in known:
        return PALETTE[known.index(name) % len(PALETTE)]
    extra = PALETTE[len(known) :] or PALETTE
    return extra[zlib.crc32(name.encode()) % len(extra)]


class Num(str):
    """A formatted number: shown as it is, right-aligned in tables."""


def _size(n_bytes: float) -> str:
    for scale, name in ((1e9, "GB"), (1e6, "MB"), (1e3, "KB")):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {name}"
    return f"{n_bytes:.0f} B"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{1000 * seconds:.3g} ms"
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {rest} s"
    return f"{minutes // 60} h {minutes % 60} m"


UNITS = {
    "bytes": _size,
    "seconds": _duration,
    "percent": lambda share: f"{100 * share:.3g} %",
}


def human(value: float | None, unit: str) -> Num:
    """A quantity in human units, as a :class:`Num` (None gives a dash).

    ``unit``: ``"bytes"`` (``"512 B"``, ``"2.0 KB"``, ``"3.4 MB"``, SI),
    ``"seconds"`` (``"250 ms"``, ``"3.4 s"``, ``"1 m 12 s"``, ``"2 h 5 m"``),
    ``"percent"`` (a share in [0, 1]: ``"12.5 %"``).
    """
    if unit not in UNITS:
        raise ValueError(f"Unknown unit {unit!r}: use one of {sorted(UNITS)}.")
    return Num("–" if value is None else UNITS[unit](value))


def fmt(value: Any, digits: int = 3) -> str:
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
            numeric = isinstance(value, int | float | np.number | Num) and (
                not isinstance(value, bool)
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


def image(fig: Any, alt: str, css_class: str = "matrix") -> str:
    """A matplotlib figure embedded as a PNG ``<img>``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f'<img class="{css_class}" alt="{html.escape(alt)}" '
        f'src="data:image/png;base64,{data}">'
    )


def folded(summary: str, body: str) -> str:
    """A ``<details>`` block, closed until the reader opens it."""
    return f"<details><summary>{html.escape(summary)}</summary>{body}</details>"


def wide(body: str) -> str:
    """Content that scrolls sideways inside its own box if it must."""
    return f'<div class="wide">{body}</div>'


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


def page(
    title: str,
    sections: list[tuple[str, str, str]],
    lead: str = "",
    *,
    plotly_js: bool = True,
) -> str:
    """The whole document: the ``lead`` (the answer, first on screen),
    navigation, sections and, for pages with figures, inlined plotly.js."""
    nav = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in sections)
    script = f"<script>{plotly.offline.get_plotlyjs()}</script>" if plotly_js else ""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
        f"{script}</head><body>"
        f"<h1>{html.escape(title)}</h1>{lead}<nav>{nav}</nav>"
        + "".join(section(a, t, b) for a, t, b in sections)
        + "</body></html>"
    )
