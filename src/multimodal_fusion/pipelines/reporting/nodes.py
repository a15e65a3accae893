"""Metrics across model variants, plots and the human-readable summary."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

FUSION_KEYS = ("best_model", "best_unimodal", "best_fusion", "fusion_gain_macro_f1")


def variant_entries(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The model-variant entries of ``metrics`` (those holding ``macro_f1``)."""
    return {n: m for n, m in metrics.items() if isinstance(m, dict) and "macro_f1" in m}


def _trained(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        n: m for n, m in variant_entries(metrics).items() if m["status"] == "trained"
    }


def collect_metrics(
    data_summary: dict[str, Any],
    alignment_metrics: dict[str, Any],
    **variant_metrics: dict[str, Any],
) -> dict[str, Any]:
    """One key per model variant, plus alignments, data counts and the verdict.

    ``best_model`` is chosen on the validation split; ``fusion_gain_macro_f1`` is
    the test macro-F1 of the best fusion model minus that of the best unimodal
    model (both picked on validation).

    Returns:
        The run's metrics, saved as versioned JSON.
    """
    trained = _trained(variant_metrics)

    def best(names):
        names = [n for n in names if n in trained]
        return max(names, key=lambda n: trained[n]["val_macro_f1"]) if names else None

    unimodal = best([n for n, m in trained.items() if len(m["modalities"]) == 1])
    fused = best([n for n, m in trained.items() if len(m["modalities"]) > 1])
    gain = (
        trained[fused]["macro_f1"] - trained[unimodal]["macro_f1"]
        if unimodal and fused
        else None
    )
    return {
        **variant_metrics,
        "alignment": alignment_metrics,
        "data": {k: data_summary[k] for k in ("raw_ids", "outcome", "modalities")},
        "best_model": best(list(trained)),
        "best_unimodal": unimodal,
        "best_fusion": fused,
        "fusion_gain_macro_f1": gain,
    }


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
    """Grouped bars of test accuracy and macro-F1 per trained variant."""
    trained = _trained(metrics)
    names = list(trained)
    fig = go.Figure(
        [
            go.Bar(
                name=key,
                x=names,
                y=[trained[n][key] for n in names],
                text=[f"{trained[n][key]:.3f}" for n in names],
            )
            for key in ("accuracy", "macro_f1")
        ]
    )
    fig.update_layout(
        title="Test split: unimodal baselines vs fusion",
        barmode="group",
        yaxis={"range": [0, 1], "title": "score"},
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
        "| variant | modalities | accuracy | macro-F1 | val macro-F1 | epochs |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in variant_entries(metrics).items():
        if m["status"] != "trained":
            lines.append(
                f"| {name} | {'+'.join(m['modalities']) or '-'} | "
                f"skipped: {m['reason']} | | | |"
            )
            continue
        lines.append(
            f"| {name} | {'+'.join(m['modalities'])} | {m['accuracy']:.3f} | "
            f"{m['macro_f1']:.3f} | {m['val_macro_f1']:.3f} | {m['epochs']} |"
        )
    lines += ["", "## Verdict", ""]
    if metrics["fusion_gain_macro_f1"] is None:
        lines.append("Only one modality is available: no fusion comparison.")
    else:
        lines.append(
            f"Best fusion model `{metrics['best_fusion']}` vs best unimodal model "
            f"`{metrics['best_unimodal']}` (both chosen on validation): macro-F1 "
            f"gain {metrics['fusion_gain_macro_f1']:+.3f} on the test split."
        )
    lines.append(f"Best model on validation: `{metrics['best_model']}`.")
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
