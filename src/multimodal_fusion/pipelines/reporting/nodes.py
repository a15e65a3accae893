"""Metrics across model variants, their assessment (calibration, per-class
scores, complexity, errors), plots, run history and the reports."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from multimodal_fusion import report_html as H  # noqa: E402
from multimodal_fusion.datasets import AudioClip  # noqa: E402
from multimodal_fusion.evaluation import (  # noqa: E402
    top_confusions,
    trained_variants,
    variant_entries,
)
from multimodal_fusion.featurization import FeaturePath  # noqa: E402
from multimodal_fusion.monitoring import profile, signal_values  # noqa: E402
from multimodal_fusion.package import ModelPackage, library_versions  # noqa: E402
from multimodal_fusion.parameters import without_anchors  # noqa: E402
from multimodal_fusion.robustness.sweeps import (  # noqa: E402
    LEVEL_TITLES,
    PERTURBED_MODALITY,
    level_label,
)
from multimodal_fusion.routing import (  # noqa: E402
    FUSED,
    routes_sentence,
    short_routes,
)
from multimodal_fusion.variants import variant_alignment  # noqa: E402

# A chosen model's 95 % interval wider than this makes the test set a caveat.
WIDE_INTERVAL = 0.1
MODALITIES = ("text", "audio")


def chosen_model(metrics: dict[str, Any], packaging: dict[str, Any]) -> str | None:
    """The variant the run recommends and packages: ``packaging.variant``, else
    the best on the validation split (``best_model``)."""
    return (packaging or {}).get("variant") or metrics["best_model"]


def reads(entry: dict[str, Any], imperfection: str) -> bool:
    """Whether a variant reads the modality an imperfection makes worse."""
    return PERTURBED_MODALITY[imperfection] in entry["modalities"]


def plot_confusion_matrix(
    test_predictions: pd.DataFrame, metrics: dict[str, Any]
) -> plt.Figure:
    """Row-normalised confusion matrix of one variant on the test split."""
    labels = sorted(set(test_predictions["label"]) | set(test_predictions["predicted"]))
    size = max(5.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    if test_predictions.empty:
        ax.text(
            0.5, 0.5, f"not trained: {metrics.get('reason')}", ha="center", wrap=True
        )
        ax.set_axis_off()
        return fig
    ConfusionMatrixDisplay.from_predictions(
        test_predictions["label"],
        test_predictions["predicted"],
        labels=labels,
        normalize="true",
        values_format=".2f",
        xticks_rotation="vertical",
        colorbar=False,
        ax=ax,
    )
    if len(labels) > 20:
        for text in ax.texts:
            text.set_visible(False)
    ax.set_title(
        f"{'+'.join(metrics['modalities'])}: accuracy {metrics['accuracy']:.3f}, "
        f"macro-F1 {metrics['macro_f1']:.3f}"
    )
    return fig


def plot_model_comparison(metrics: dict[str, Any]) -> go.Figure:
    """Test macro-F1 (solid, with its 95 % bootstrap interval) and accuracy
    (hatched) per trained variant, each variant in its colour."""
    trained = trained_variants(metrics)
    names = list(trained)
    colours = [H.variant_colour(n) for n in names]
    macro_f1 = [trained[n]["macro_f1"] for n in names]
    # Without an interval (older metrics) the error bar has no length.
    intervals = [
        trained[n].get("macro_f1_ci") or [trained[n]["macro_f1"]] * 2 for n in names
    ]
    fig = go.Figure(
        [
            go.Bar(
                name="accuracy",
                x=names,
                y=[trained[n]["accuracy"] for n in names],
                marker={"color": colours, "pattern": {"shape": "/"}},
                hovertemplate="%{x}: accuracy %{y:.3f}<extra></extra>",
            ),
            go.Bar(
                name="macro_f1",
                x=names,
                y=macro_f1,
                text=[f"{v:.3f}" for v in macro_f1],
                textposition="inside",
                insidetextanchor="middle",
                marker={"color": colours},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [
                        ci[1] - v for ci, v in zip(intervals, macro_f1, strict=True)
                    ],
                    "arrayminus": [
                        v - ci[0] for ci, v in zip(intervals, macro_f1, strict=True)
                    ],
                    "color": "#888",
                },
                customdata=intervals,
                hovertemplate="%{x}: macro-F1 %{y:.3f} "
                "(95 %% interval %{customdata[0]:.3f} to %{customdata[1]:.3f})"
                "<extra></extra>",
            ),
        ]
    )
    fig.update_layout(
        title="Test split: macro-F1 (solid, 95 % interval) and accuracy (hatched)",
        barmode="group",
        showlegend=False,
        yaxis={"range": [0, 1.05], "title": "score"},
        template="plotly_white",
    )
    return fig


def _line_style(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A variant's line and marker colour; unimodal variants dashed."""
    colour = H.variant_colour(name)
    dash = "dash" if len(entry.get("modalities", [])) == 1 else "solid"
    return {"line": {"color": colour, "dash": dash}, "marker": {"color": colour}}


def plot_robustness(metrics: dict[str, Any], imperfection: str) -> go.Figure:
    """Test macro-F1 at each level of one imperfection, for every trained
    variant that reads the modality it makes worse."""
    trained = trained_variants(metrics)
    curves = {
        name: entry["robustness"][imperfection]
        for name, entry in trained.items()
        if imperfection in entry.get("robustness", {}) and reads(entry, imperfection)
    }
    levels = next(iter(curves.values()))["levels"] if curves else []
    fig = go.Figure(
        [
            go.Scatter(
                name=name,
                x=[level_label(imperfection, level) for level in levels],
                y=curve["macro_f1"],
                mode="lines+markers",
                **_line_style(name, trained[name]),
            )
            for name, curve in curves.items()
        ]
    )
    if not curves:
        fig.add_annotation(
            text=f"no trained model reads {PERTURBED_MODALITY[imperfection]}",
            showarrow=False,
            x=0.5,
            y=0.5,
            xref="paper",
            yref="paper",
        )
    fig.update_layout(
        title=f"Robustness: {imperfection.replace('_', ' ')} (test split; models "
        f"that read {PERTURBED_MODALITY[imperfection]})",
        xaxis={"title": LEVEL_TITLES[imperfection], "type": "category"},
        yaxis={"range": [0, 1], "title": "macro-F1"},
        template="plotly_white",
    )
    return fig


def write_summary(metrics: dict[str, Any], data_summary: dict[str, Any]) -> str:
    """A short Markdown report: data accounting, model table, verdict."""
    outcome = data_summary["outcome"]
    lines = [
        "# multimodal-fusion run summary",
        "",
        "## Data",
        f"{data_summary['raw_ids']} raw ids: "
        + ", ".join(f"{k} {v}" for k, v in outcome.items())
        + f" (sum {sum(outcome.values())}).",
        "Kept contacts by modality: "
        + ", ".join(f"{k} {v}" for k, v in data_summary["modalities"].items())
        + ".",
    ]
    if data_summary["rejected_records"]:
        lines += ["", "Rejected records:", ""]
        lines += [
            f"- {r['count']} × {r['source']}: {r['reason']}"
            for r in data_summary["rejected_records"]
        ]
    lines += [
        "",
        "## Models (test split)",
        "",
        "| variant | modalities | accuracy | macro-F1 | val macro-F1 | epochs "
        "| macro-F1 across seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in variant_entries(metrics).items():
        if m["status"] != "trained":
            lines.append(
                f"| {name} | {'+'.join(m['modalities']) or '-'} | "
                f"skipped: {m['reason']} | | | | |"
            )
            continue
        lines.append(
            f"| {name} | {'+'.join(m['modalities'])} | {m['accuracy']:.3f} | "
            f"{m['macro_f1']:.3f} | {m['val_macro_f1']:.3f} | {m['epochs']} | "
            f"{_seed_cell(m)} |"
        )
    lines += ["", "## Verdict", "", _gain_sentence(metrics)]
    lines.append(f"Best model on validation: `{metrics['best_model']}`.")
    lines += _reliance_lines(metrics)
    lines += _floor_line(metrics)
    for name, alignment in metrics["alignment"].items():
        if alignment["status"] != "evaluated":
            continue
        recall = alignment["text_to_audio"]
        lines += [
            "",
            f"{name} ({alignment['method']}, {alignment['n_components']} dims, "
            f"{alignment['n_pairs']} test pairs), text→audio retrieval: "
            + ", ".join(
                f"{k} {v['model']:.3f} (random {v['random']:.3f})"
                for k, v in recall.items()
            ),
        ]
    return "\n".join(lines) + "\n"


def _floor_line(metrics: dict[str, Any]) -> list[str]:
    """One line for the summary: which rows each fusion variant answers with a
    unimodal model (none when every row stays on the networks)."""
    moved = {
        name: short_routes(m.get("routes", {}).get("routes", {}))
        for name, m in trained_variants(metrics).items()
    }
    moved = {name: routes for name, routes in moved.items() if routes}
    if not moved:
        return []
    return [
        "",
        "Floor (rows a unimodal model answers, chosen on validation): "
        + "; ".join(f"{name}: {routes}" for name, routes in moved.items())
        + ".",
    ]


def _routing_sentences(metrics: dict[str, Any]) -> list[str]:
    """Per fusion variant that answers some rows with a unimodal model (its
    floor, modeling.unimodal_fallback): which rows, and why."""
    routed = {
        name: m["routes"]
        for name, m in trained_variants(metrics).items()
        if set(m.get("routes", {}).get("routes", {}).values()) - {FUSED}
    }
    return [
        f"{name}: {routes_sentence(r['routes'], r['validation_macro_f1'])}."
        for name, r in routed.items()
    ]


def _reliance_lines(metrics: dict[str, Any]) -> list[str]:
    """The fusion variants' reliance on each modality, and a warning for each
    that ignores an informative one."""
    relying = {
        name: m["reliance"]
        for name, m in trained_variants(metrics).items()
        if m.get("reliance")
    }
    if not relying:
        return []
    lines = [
        "",
        "Modality reliance (test macro-F1 lost with the modality blanked in every "
        "row): "
        + "; ".join(
            f"{name} "
            + ", ".join(f"{mod} {entry['drop']:+.3f}" for mod, entry in by.items())
            for name, by in relying.items()
        )
        + ".",
    ]
    for item in metrics.get("ignored_modalities", []):
        entry = relying[item["variant"]][item["modality"]]
        lines.append(
            f"**Warning:** `{item['variant']}` ignores its {item['modality']} input: "
            f"blanking it changes its macro-F1 by {-entry['drop']:+.3f}, although "
            f"`{entry['unimodal']}` reaches {entry['unimodal_macro_f1']:.3f} "
            f"(chance {entry['chance']:.3f})."
        )
    return lines


def plot_reliability(metrics: dict[str, Any], packaging: dict[str, Any]) -> go.Figure:
    """Reliability diagram of the chosen model and the best unimodal model:
    accuracy against mean confidence per bin, marker area by the bin's count."""
    trained = trained_variants(metrics)
    shown = [
        n
        for n in dict.fromkeys(
            [chosen_model(metrics, packaging), metrics.get("best_unimodal")]
        )
        if n in trained
    ]
    largest = max(
        (b["count"] for n in shown for b in trained[n]["reliability"]), default=1
    )
    fig = go.Figure(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name="perfect calibration",
            line={"dash": "dot", "color": "grey"},
        )
    )
    for name in shown:
        entry, bins = trained[name], trained[name]["reliability"]
        style = _line_style(name, entry)
        style["marker"]["size"] = [6 + 24 * (b["count"] / largest) ** 0.5 for b in bins]
        fig.add_trace(
            go.Scatter(
                x=[b["confidence"] for b in bins],
                y=[b["accuracy"] for b in bins],
                mode="lines+markers",
                name=f"{name} (ECE {entry['ece']:.3f})",
                customdata=[b["count"] for b in bins],
                hovertemplate="confidence %{x:.2f}, accuracy %{y:.2f}: "
                "%{customdata} predictions<extra>" + name + "</extra>",
                **style,
            )
        )
    fig.update_layout(
        title="Calibration on the test split (marker area: predictions per bin)",
        xaxis={"title": "mean confidence", "range": [0, 1.02]},
        yaxis={"title": "accuracy", "range": [0, 1.05]},
        template="plotly_white",
    )
    return fig


def analyse_errors(
    metrics: dict[str, Any],
    contacts: pd.DataFrame,
    params: dict[str, Any],
    packaging: dict[str, Any],
    **test_predictions: pd.DataFrame,
) -> dict[str, Any]:
    """The chosen model's most frequent confusions, each with a few test examples
    and what every other trained variant predicted for them.

    Args:
        metrics: Collected metrics (``best_model``, the trained variants).
        contacts: Split contacts (masked text, audio presence).
        params: ``top_confusions``, ``examples_per_confusion``.
        packaging: ``variant``: the chosen model (see :func:`chosen_model`).
        **test_predictions: Test predictions per variant.

    Returns:
        ``{"model", "confusions": [{"label", "predicted", "count",
        "examples": [{"id", "text", "has_audio", "predictions"}]}]}``.
    """
    best = chosen_model(metrics, packaging)
    if best not in trained_variants(metrics):
        return {"model": None, "confusions": []}
    others = {
        name: frame.set_index("id")["predicted"]
        for name, frame in test_predictions.items()
        if name in trained_variants(metrics)
    }
    by_id = contacts.set_index("id")
    predictions = test_predictions[best].sort_values("id")
    confusions = []
    for pair in top_confusions(predictions, params["top_confusions"]):
        matches = predictions[
            (predictions["label"] == pair["label"])
            & (predictions["predicted"] == pair["predicted"])
        ]
        examples = [
            {
                "id": cid,
                "text": by_id.at[cid, "text"],
                "has_audio": bool(by_id.at[cid, "has_audio"]),
                "predictions": {name: str(p[cid]) for name, p in others.items()},
            }
            for cid in matches["id"].head(params["examples_per_confusion"])
        ]
        confusions.append({**pair, "count": int(pair["count"]), "examples": examples})
    return {"model": best, "confusions": confusions}


def summarise_history(
    metrics_history: dict[str, dict[str, Any]], metrics: dict[str, Any]
) -> list[dict[str, Any]]:
    """Headline figures of every saved run, oldest first.

    ``metrics`` (this run, already saved) orders this node after the save, so
    the history includes the current run.
    """
    rows = []
    for version, run in metrics_history.items():
        run_info = run.get("run", {})
        row = {
            "version": version,
            "environment": run_info.get("environment"),
            "data_fingerprint": run_info.get("data_fingerprint"),
            "best_model": run.get("best_model"),
            "fusion_gain_macro_f1": run.get("fusion_gain_macro_f1"),
        }
        for name, entry in variant_entries(run).items():
            row[f"{name}.macro_f1"] = entry.get("macro_f1")
        rows.append(row)
    return rows


def _history_variants(run_history: list[dict[str, Any]]) -> list[str]:
    """Every variant with a test macro-F1 in some saved run, sorted."""
    suffix = ".macro_f1"
    return sorted(
        {
            k.removesuffix(suffix)
            for row in run_history
            for k in row
            if k.endswith(suffix)
        }
    )


def plot_run_history(run_history: list[dict[str, Any]]) -> go.Figure:
    """Test macro-F1 per variant across runs."""
    versions = [row["version"] for row in run_history]
    names = _history_variants(run_history)
    fig = go.Figure(
        [
            go.Scatter(
                x=versions,
                y=[row.get(f"{n}.macro_f1") for row in run_history],
                mode="lines+markers",
                name=n,
                line={"color": H.variant_colour(n)},
                marker={"color": H.variant_colour(n)},
            )
            for n in names
        ]
    )
    fig.update_layout(
        title="Run history: test macro-F1 per variant",
        xaxis={"title": "run (version)", "type": "category"},
        yaxis={"title": "macro-F1", "range": [0, 1]},
        template="plotly_white",
    )
    return fig


def plot_class_balance(data_summary: dict[str, Any]) -> go.Figure:
    """Contacts per class and split."""
    fig = go.Figure(
        [
            go.Bar(name=split, x=list(counts), y=list(counts.values()))
            for split, counts in data_summary["classes"].items()
        ]
    )
    fig.update_layout(
        title="Class balance per split",
        barmode="stack",
        yaxis={"title": "contacts"},
        template="plotly_white",
    )
    return fig


def plot_clip_lengths(audio_index: pd.DataFrame) -> go.Figure:
    """Histogram of prepared clip durations."""
    fig = go.Figure(go.Histogram(x=audio_index["duration_s"], nbinsx=40))
    fig.update_layout(
        title=f"Clip length ({len(audio_index)} clips)",
        xaxis={"title": "seconds"},
        yaxis={"title": "clips"},
        template="plotly_white",
    )
    return fig


def _interval(entry: dict[str, Any]) -> str:
    """A variant's 95 % interval of test macro-F1, as a cell."""
    ci = entry.get("macro_f1_ci")
    return H.Num(f"{ci[0]:.3f}–{ci[1]:.3f}") if ci else H.Num("–")


def _reliance_cell(entry: dict[str, Any], modality: str) -> str | float | None:
    """The macro-F1 a variant loses without a modality, flagged when it
    ignores an informative one; "n/a" when it does not read the modality."""
    if modality not in entry["modalities"]:
        return "n/a"
    reliance = entry.get("reliance", {}).get(modality)
    if reliance is None:
        return None
    flag = " (ignored)" if reliance["ignored"] else ""
    return H.Num(f"{H.fmt(reliance['drop'])}{flag}")


def _model_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    return [
        [
            name,
            "+".join(m["modalities"]),
            m["status"] if m["status"] == "trained" else f"skipped: {m['reason']}",
            m["accuracy"],
            m["macro_f1"],
            m.get("val_macro_f1"),
            m.get("ece"),
            _interval(m),
            _seed_cell(m) if m["status"] == "trained" else None,
            *(
                _reliance_cell(m, modality) if len(m["modalities"]) > 1 else None
                for modality in MODALITIES
            ),
        ]
        for name, m in variant_entries(metrics).items()
    ]


def _answer(metrics: dict[str, Any], chosen: str | None) -> str:
    """The first screen: the model to use, what fusion buys (with its interval
    and significance) and the main caveats."""
    trained = trained_variants(metrics)
    if chosen not in trained:
        return (
            '<div class="answer" id="answer">'
            + H.paragraph("No model was trained: see the model comparison below.")
            + "</div>"
        )
    entry = trained[chosen]
    ci = entry.get("macro_f1_ci")
    use = (
        f"Use {chosen} ({' + '.join(entry['modalities'])}): test macro-F1 "
        f"{H.fmt(entry['macro_f1'])}"
        + (f" (95 % interval {H.fmt(ci[0])}–{H.fmt(ci[1])})" if ci else "")
        + f", accuracy {H.human(entry['accuracy'], 'percent')} on "
        f"{entry['split_sizes']['test']} test contacts. It is the packaged model "
        "(model_package)."
    )
    caveats = _caveats(metrics, chosen)
    parts = [
        f'<p class="use"><b>{html.escape(use)}</b></p>',
        H.paragraph(_gain_sentence(metrics)),
    ]
    if caveats:
        parts.append(
            f'<p class="caveat"><b>Main caveat:</b> {html.escape(caveats[0])}</p>'
        )
    if len(caveats) > 1:
        parts.append(H.paragraph("Also: " + " ".join(caveats[1:3])))
    return '<div class="answer" id="answer">' + "".join(parts) + "</div>"


def _gain_sentence(metrics: dict[str, Any]) -> str:
    """What fusion buys over the best single modality, with its interval (and
    across seeds when there are several)."""
    gain = metrics["fusion_gain_macro_f1"]
    if gain is None:
        return "Only one modality is available: no fusion comparison."
    ci = metrics.get("fusion_gain_ci")
    sentence = (
        f"Fusion buys {gain:+.3f} macro-F1 over the best single modality "
        f"({metrics['best_fusion']} vs {metrics['best_unimodal']}, both chosen on "
        "validation)"
    )
    if not ci:
        return sentence + "."
    seeds = metrics.get("fusion_gain_seeds")
    if metrics["fusion_gain_significant"]:
        verdict = "significant"
    elif ci[0] <= 0 <= ci[1]:
        verdict = "within noise: the interval includes 0"
    else:
        verdict = "within seed noise: the interval across seeds includes 0"
    sentence += f": 95 % paired bootstrap interval {ci[0]:+.3f} to {ci[1]:+.3f}"
    if not seeds:
        return sentence + (
            f", {verdict}. One training seed: the interval covers the test rows, "
            "not the seed's share (modeling.seeds measures it)."
        )
    return sentence + (
        f"; across {len(seeds['seeds'])} seeds {seeds['mean']:+.3f} ± "
        f"{seeds['std']:.3f} (95 % interval {seeds['ci'][0]:+.3f} to "
        f"{seeds['ci'][1]:+.3f}), {verdict}."
    )


def _seed_cell(entry: dict[str, Any]) -> str:
    """A variant's test macro-F1 across seeds, as a cell."""
    spread = entry.get("seed_spread")
    if not spread or spread["std"] is None:
        return "1 seed"
    return H.Num(
        f"{spread['mean']:.3f} ± {spread['std']:.3f} ({len(spread['seeds'])} seeds)"
    )


def _caveats(metrics: dict[str, Any], chosen: str) -> list[str]:
    """What to keep in mind about the chosen model, most important first: it
    ignores a modality; its gain is within noise (or fusion does significantly
    better than it); a wide interval; other variants ignoring a modality; its
    weakest robustness."""
    entry = trained_variants(metrics)[chosen]
    ignored = [
        f"{item['variant']} ignores its {item['modality']} input (blanking it "
        "barely changes its macro-F1, though that modality alone carries the label)."
        for item in metrics.get("ignored_modalities", [])
    ]
    mine = [c for c in ignored if c.startswith(f"{chosen} ")]
    caveats = mine.copy()
    if len(entry["modalities"]) > 1 and metrics.get("fusion_gain_significant") is False:
        caveats.append(
            "fusion's gain is within noise on this test set: "
            f"{metrics['best_unimodal']} (one modality) may serve as well."
        )
    if (
        len(entry["modalities"]) == 1
        and metrics.get("fusion_gain_significant")
        and metrics["fusion_gain_macro_f1"] > 0
    ):
        caveats.append(
            f"{metrics['best_fusion']} (fusion) is significantly better than the "
            "best single-modality model."
        )
    ci = entry.get("macro_f1_ci")
    if ci and ci[1] - ci[0] > WIDE_INTERVAL:
        caveats.append(
            f"small test set: {entry['split_sizes']['test']} contacts, so the "
            f"chosen model's 95 % interval is {ci[1] - ci[0]:.2f} wide."
        )
    caveats += [c for c in ignored if c not in mine]
    curves = {
        name: curve
        for name, curve in entry.get("robustness", {}).items()
        if reads(entry, name)
    }
    if curves:
        name, curve = min(
            curves.items(), key=lambda item: item[1]["relative_robustness"]
        )
        caveats.append(
            f"its weakest robustness is to {name.replace('_', ' ')}: macro-F1 "
            f"{H.fmt(curve['macro_f1'][0])} clean, "
            f"{H.fmt(curve['macro_f1'][-1])} at "
            f"{level_label(name, curve['levels'][-1])}."
        )
    return [c[0].upper() + c[1:] for c in caveats]


def _data_section(data_summary: dict[str, Any], figures: dict[str, go.Figure]) -> str:
    outcome = data_summary["outcome"]
    body = [
        H.paragraph(f"{data_summary['raw_ids']} raw ids, each in exactly one place:"),
        H.table(
            [[k, v] for k, v in outcome.items()] + [["sum", sum(outcome.values())]],
            ["outcome", "ids"],
        ),
        H.table(list(data_summary["modalities"].items()), ["kept contacts", "count"]),
        _rejections(data_summary["rejected_records"]),
        H.figure(figures["class_balance_plot"], "class-balance"),
        H.figure(figures["clip_lengths_plot"], "clip-lengths"),
    ]
    return "".join(body)


def _rejections(records: list[dict[str, Any]]) -> str:
    if not records:
        return H.paragraph("No record was rejected.")
    rows = [[r["source"], r["reason"], r["count"]] for r in records]
    return H.paragraph("Rejected records and their reasons:") + H.table(
        rows, ["source", "reason", "count"]
    )


def _models_section(metrics: dict[str, Any], figures: dict[str, go.Figure]) -> str:
    verdict = (
        _gain_sentence(metrics) + f" Best model on validation: {metrics['best_model']}."
    )
    return (
        H.wide(
            H.table(
                _model_rows(metrics),
                [
                    "variant",
                    "modalities",
                    "status",
                    "accuracy",
                    "macro-F1",
                    "val macro-F1",
                    "ECE",
                    "macro-F1 95 % interval",
                    "macro-F1 across seeds",
                    *(f"macro-F1 lost without {m}" for m in MODALITIES),
                ],
            )
        )
        + H.paragraph(
            "Intervals: bootstrap resamples of the test rows. Across seeds: mean ± "
            "standard deviation of the test macro-F1 of the variant trained once "
            "per seed of modeling.seeds (the first is the model above). Reliance: "
            "the test "
            "macro-F1 a fusion model loses when a modality is blanked in every row; "
            "(ignored): that modality alone carries the label, yet the model barely "
            "uses it."
        )
        + H.paragraph(verdict)
        + "".join(H.paragraph(line) for line in _routing_sentences(metrics))
        + H.figure(figures["model_comparison_plot"], "model-comparison")
    )


def _robustness_section(metrics, figures) -> str:
    """Per imperfection: its curve plot, then every variant's relative and
    effective robustness (and its score at the strongest level)."""
    baseline = metrics.get("robustness_baseline")
    parts = [
        H.paragraph(
            "Test macro-F1 of every model as each modality is made worse, level by "
            "level (MultiBench). Relative robustness: area under the curve with the "
            "levels spread evenly over [0, 1] (the mean score across levels). "
            "Effective robustness: the same area for the curve minus the baseline's "
            f"curve ({baseline or 'not trained'}) moved to the model's clean score; "
            "above 0 means it degrades more slowly than the baseline. A model that "
            "does not read the modality an imperfection makes worse shows n/a."
        )
    ]
    trained = trained_variants(metrics)
    # In the configured order (noise, text, missing), as the sweep wrote them.
    names = list(
        dict.fromkeys(n for m in trained.values() for n in m.get("robustness", {}))
    )
    for name in names:
        rows = [
            [
                variant,
                *(
                    [
                        curve["macro_f1"][0],
                        curve["macro_f1"][-1],
                        curve["relative_robustness"],
                        curve.get("effective_robustness"),
                    ]
                    if reads(entry, name)
                    else ["n/a"] * 4
                ),
            ]
            for variant, entry in trained.items()
            if (curve := entry.get("robustness", {}).get(name))
        ]
        parts += [
            f"<h3>{html.escape(name.replace('_', ' '))}</h3>",
            H.figure(figures[f"robustness_{name}_plot"], f"robustness-{name}"),
            H.table(
                rows,
                [
                    "variant",
                    "clean macro-F1",
                    "strongest level macro-F1",
                    "relative robustness",
                    "effective robustness",
                ],
            ),
        ]
    return "".join(parts)


def _calibration_section(metrics, figures) -> str:
    rows = [
        [n, m["ece"], sum(b["count"] for b in m["reliability"])]
        for n, m in trained_variants(metrics).items()
    ]
    return (
        H.paragraph(
            "Expected calibration error (ECE) over equal-width confidence "
            "bins on the test split; lower is better."
        )
        + H.table(rows, ["variant", "ECE", "predictions"])
        + H.figure(figures["reliability_plot"], "reliability")
    )


def _errors_section(metrics, error_analysis, clean_audio) -> str:
    best = error_analysis["model"]
    if best is None:
        return H.paragraph("No model was trained.")
    per_class = metrics[best]["per_class"]
    parts = [
        H.paragraph(f"Per-class scores of the chosen model, {best}:"),
        H.table(
            [
                [c, s["precision"], s["recall"], s["f1"], s["support"]]
                for c, s in per_class.items()
            ],
            ["class", "precision", "recall", "F1", "support"],
        ),
        H.paragraph(
            "Its most frequent confusions, with test examples (text as "
            "masked by data_processing) and what each variant said:"
        ),
    ]
    for confusion in error_analysis["confusions"]:
        parts.append(
            f"<h3>{html.escape(confusion['label'])} → "
            f"{html.escape(confusion['predicted'])} ({confusion['count']}×)</h3>"
        )
        rows = []
        for example in confusion["examples"]:
            said = ", ".join(f"{k}: {v}" for k, v in example["predictions"].items())
            rows.append((example, said))
        parts.append(_examples_table(rows, clean_audio))
    return "".join(parts)


def _examples_table(rows, clean_audio: dict[str, Callable[[], AudioClip]]) -> str:
    body = []
    for example, said in rows:
        cid = example["id"]
        audio = "no audio"
        if example["has_audio"] and cid in clean_audio:
            clip = clean_audio[cid]()
            audio = H.audio_player(clip.waveform, clip.sample_rate) + f"<br>{cid}.flac"
        body.append(
            f"<tr><td>{html.escape(cid)}</td>"
            f"<td>{html.escape(example['text']) or '<i>no text</i>'}</td>"
            f"<td>{audio}</td><td>{html.escape(said)}</td></tr>"
        )
    head = "<tr><th>id</th><th>text</th><th>clip</th><th>predictions</th></tr>"
    return f"<table>{head}{''.join(body)}</table>"


def _complexity_section(metrics) -> str:
    rows = [
        [
            n,
            m["n_params"],
            H.human(m["size_bytes"], "bytes"),
            m["epochs"],
            H.human(m["train_seconds"], "seconds"),
            H.human(m["predict_ms_per_sample"] / 1000, "seconds"),
        ]
        for n, m in trained_variants(metrics).items()
    ]
    return H.table(
        rows,
        [
            "variant",
            "parameters",
            "size (pickled)",
            "epochs",
            "training",
            "prediction per contact",
        ],
    )


def _alignment_section(metrics) -> str:
    """One paragraph per alignment, then their retrieval scores in one table."""
    notes, rows = [], []
    for name, alignment in metrics["alignment"].items():
        if alignment["status"] != "evaluated":
            notes.append(H.paragraph(f"{name} skipped: {alignment.get('reason')}."))
            continue
        notes.append(
            H.paragraph(
                f"{name}: {alignment['method']}, {alignment['n_components']} "
                f"dimensions, {alignment['n_pairs']} test pairs."
            )
        )
        rows += [
            [name, direction, k, v["model"], v["random"]]
            for direction in ("text_to_audio", "audio_to_text")
            for k, v in alignment.get(direction, {}).items()
        ]
    table = (
        H.table(rows, ["alignment", "direction", "score", "model", "random"])
        if rows
        else ""
    )
    return "".join(notes) + table


def _history_section(run_history, figures) -> str:
    """One row per saved run: its data, best model, gain and every variant's
    test macro-F1 (narrow, wrapping headers so the table fits the page)."""
    variants = _history_variants(run_history)
    rows = [
        [
            row["version"],
            f"{row.get('environment') or '–'} / "
            f"{(row.get('data_fingerprint') or '–')[:8]}",
            row.get("best_model"),
            row.get("fusion_gain_macro_f1"),
            *(row.get(f"{v}.macro_f1") for v in variants),
        ]
        for row in run_history
    ]
    header = [
        "version",
        "env / data",
        "best model",
        "fusion gain",
        *(v.replace("_", " ") for v in variants),
    ]
    return (
        H.paragraph("Test macro-F1 of every variant in every saved run.")
        + H.wide(H.table(rows, header))
        + H.figure(figures["run_history_plot"], "run-history")
    )


def _confusion_section(metrics, chosen, artefacts) -> str:
    """The chosen model's confusion matrix (the figure of its PNG output)."""
    if chosen not in trained_variants(metrics):
        return ""
    figure = plot_confusion_matrix(
        artefacts[f"{chosen}_test_predictions"], metrics[chosen]
    )
    image = H.image(figure, f"confusion matrix of {chosen}")
    plt.close(figure)
    return (
        H.paragraph(
            f"Confusion matrix of the chosen model, {chosen} (rows: true label, "
            "normalised per row; test split):"
        )
        + image
    )


def render_report(
    *,
    metrics: dict[str, Any],
    data_summary: dict[str, Any],
    error_analysis: dict[str, Any],
    run_history: list[dict[str, Any]],
    parameters: dict[str, Any],
    clean_audio: dict[str, Callable[[], AudioClip]],
    **artefacts: Any,
) -> str:
    """The self-contained HTML report of the run (plots and clips embedded).

    It opens with the answer (the model to use, what fusion buys, the main
    caveat). Every number is formatted from ``metrics`` and the other inputs
    with :mod:`multimodal_fusion.report_html`, so the page matches them exactly.

    Args:
        artefacts: The ``<plot>_plot`` figures and every variant's
            ``<variant>_test_predictions`` (the chosen one's confusion matrix).
    """
    chosen = chosen_model(metrics, parameters.get("packaging", {}))
    sections = [
        ("models", "Model comparison", _models_section(metrics, artefacts)),
        ("robustness", "Robustness", _robustness_section(metrics, artefacts)),
        ("calibration", "Calibration", _calibration_section(metrics, artefacts)),
        (
            "errors",
            "Error analysis",
            _confusion_section(metrics, chosen, artefacts)
            + _errors_section(metrics, error_analysis, clean_audio),
        ),
        ("complexity", "Complexity", _complexity_section(metrics)),
        ("alignment", "Alignment", _alignment_section(metrics)),
        ("data", "Data", _data_section(data_summary, artefacts)),
        ("history", "Run history", _history_section(run_history, artefacts)),
        (
            "parameters",
            "Parameters",
            H.folded(
                "Every parameter of the run (click to open)",
                "<pre>"
                + html.escape(
                    json.dumps(without_anchors(parameters), indent=2, sort_keys=True)
                )
                + "</pre>",
            ),
        ),
    ]
    return H.page("multimodal-fusion report", sections, lead=_answer(metrics, chosen))


def package_model(  # noqa: PLR0913, PLR0917 - a node: Kedro passes inputs by name
    metrics: dict[str, Any],
    feature_path: FeaturePath,
    contacts: pd.DataFrame,
    audio_index: pd.DataFrame,
    parameters: dict[str, Any],
    params: dict[str, Any],
    **artefacts: Any,
) -> ModelPackage:
    """The chosen model and everything it needs to predict, as one package.

    Args:
        metrics: This run's metrics (``best_model``, the variants' test scores).
        feature_path: The fitted featurizers.
        contacts: The split contacts (training data profile and fingerprint).
        audio_index: Every kept clip's measures (the profile's clip signals).
        parameters: Every parameter of the run.
        params: ``variant``: the variant to package (null: ``best_model``,
            chosen on the validation split).
        artefacts: ``<variant>_model`` and ``<variant>_test_predictions`` of
            every variant, ``<alignment>_model`` of every alignment.

    Raises:
        ValueError: when the variant is unknown or was not trained.
    """
    variant = chosen_model(metrics, params)
    entry = variant_entries(metrics).get(variant)
    if entry is None or entry["status"] != "trained":
        reason = entry.get("reason", "") if entry else "unknown variant"
        raise ValueError(
            f"Cannot package '{variant}': it was not trained in this run "
            f"({reason or 'no model'}). Set reporting packaging.variant to one of "
            f"{sorted(trained_variants(metrics))}."
        )
    alignment = variant_alignment(variant)
    train = contacts[contacts["split"] == "train"]
    values = signal_values(
        train,
        audio_index,
        feature_path.token_vocabulary,
        artefacts[f"{variant}_test_predictions"],
    )
    trained_with = {
        name: parameters[name]
        for name in (variant, "feature_extraction", "seed")
        if name in parameters
    }
    if alignment:
        trained_with["alignment"] = parameters["modeling"]["alignments"][alignment]
    return ModelPackage(
        variant=variant,
        model=artefacts[f"{variant}_model"],
        feature_path=feature_path,
        preprocessing={
            "text": parameters["data_processing"]["text"],
            "audio": parameters["data_processing"]["audio"],
        },
        # An aligned variant's model projects its inputs itself (routing.py).
        alignment=None,
        reference=profile(values),
        parameters=trained_with,
        provenance={
            **metrics["run"],  # environment and data fingerprints, from evaluation
            "test_metrics": {
                key: entry.get(key)
                for key in ("accuracy", "macro_f1", "val_macro_f1", "ece")
            },
            "split_sizes": entry["split_sizes"],
            "chosen": "parameters" if params.get("variant") else "best on validation",
            "libraries": library_versions(),
        },
    )
