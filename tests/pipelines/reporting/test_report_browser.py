"""The HTML report of the toy run (``toy_project``) as a reader sees it, in
headless Chromium at 1280x800: the first screen answers, each variant keeps
one colour across the plots, and the run history fits the window."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from multimodal_fusion.robustness.sweeps import PERTURBED_MODALITY
from multimodal_fusion.variants import VARIANT_INPUTS
from tests.browser import render_dom, requires_chromium
from tests.project_copy import latest_version, outputs

REPORTING = outputs() / "08_reporting"
WINDOW = (1280, 800)

# Runs once the page has loaded and plotly has drawn: what is on the first
# screen, every drawn trace with its resolved colours (plotly's _fullData, so a
# colour left to the template would show), and the widths that would scroll.
PROBE = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const answer = document.getElementById("answer");
  const box = answer.getBoundingClientRect();
  const traces = [];
  document.querySelectorAll(".plot .plotly-graph-div").forEach((gd) => {
    (gd._fullData || []).forEach((t) => traces.push({
      plot: gd.id, name: t.name, x: t.x,
      marker: t.marker ? t.marker.color : null,
      line: t.line ? t.line.color : null,
    }));
  });
  const history = document.querySelector("#history .wide");
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({
    width: window.innerWidth, height: window.innerHeight,
    answer: {top: box.top, bottom: box.bottom, text: answer.innerText},
    page_width: document.documentElement.scrollWidth,
    history: {scroll: history.scrollWidth, client: history.clientWidth},
    traces: traces,
  });
  document.body.appendChild(probe);
}, 500));
</script>"""


def _probe(report: Path, folder: Path) -> dict[str, Any]:
    """The probe's measurements of a copy of ``report`` rendered at WINDOW."""
    page = folder / "report.html"
    page.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = render_dom(page.as_uri(), folder, window=WINDOW)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, "the probe did not run: no #answer or #history in the report?"
    return json.loads(found.group(1).replace("&amp;", "&").replace("&quot;", '"'))


def _variant_colours(traces: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Every colour each variant is drawn in: bars coloured per variant (x),
    or a trace named after the variant (its line and markers)."""
    colours: dict[str, set[str]] = {}
    for trace in traces:
        if isinstance(trace["marker"], list):
            for name, colour in zip(trace["x"], trace["marker"], strict=True):
                colours.setdefault(name, set()).add(colour)
            continue
        name = trace["name"].split(" (")[0]
        if name in VARIANT_INPUTS:
            drawn = {trace["marker"], trace["line"]} - {None}
            colours.setdefault(name, set()).update(drawn)
    return colours


@requires_chromium
def test_the_report_answers_on_the_first_screen_with_one_colour_per_variant(
    toy_project, tmp_path
):
    metrics = json.loads(
        latest_version(toy_project / REPORTING / "metrics.json").read_text()
    )
    probe = _probe(latest_version(toy_project / REPORTING / "report.html"), tmp_path)

    # A 1280x800 window: its viewport is less high (headless Chromium keeps
    # room for a browser's bars, as a reader's screen would).
    assert probe["width"] == WINDOW[0]
    assert probe["height"] <= WINDOW[1]
    # The answer is entirely on the first screen: the chosen model (the toy
    # run packages best_model), and the fusion gain with its interval.
    assert 0 <= probe["answer"]["top"] < probe["answer"]["bottom"] <= probe["height"]
    text = " ".join(probe["answer"]["text"].split())
    chosen = metrics[metrics["best_model"]]
    assert f"Use {metrics['best_model']} " in text
    assert f"test macro-F1 {chosen['macro_f1']:.3f}" in text
    low, high = metrics["fusion_gain_ci"]
    assert (
        f"Fusion buys {metrics['fusion_gain_macro_f1']:+.3f} macro-F1 over the best "
        f"single modality" in text
    )
    assert f"95 % paired bootstrap interval {low:+.3f} to {high:+.3f}" in text
    assert "Main caveat:" in text

    # One colour per variant across every plot, and no two variants alike.
    colours = _variant_colours(probe["traces"])
    trained = [n for n in VARIANT_INPUTS if metrics[n]["status"] == "trained"]
    assert set(colours) == set(trained)
    assert all(len(c) == 1 for c in colours.values()), colours
    assert len({c.pop() for c in colours.values()}) == len(trained)
    # Robustness curves only for the variants that read the perturbed modality.
    for trace in probe["traces"]:
        if trace["plot"].startswith("robustness-"):
            imperfection = trace["plot"].removeprefix("robustness-")
            modality = PERTURBED_MODALITY[imperfection]
            assert modality in metrics[trace["name"]]["modalities"], trace["name"]

    # Nothing scrolls sideways: not the page, not the run history's box.
    assert probe["page_width"] <= WINDOW[0]
    assert probe["history"]["scroll"] <= probe["history"]["client"]
