"""Scoring a batch of new contacts with a model package: the package's
preprocessing settings for the shared validation nodes, predictions through the
package's featurizers (never refit), the batch's accounting and scores, and its
drift against the training data.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from sklearn.metrics import accuracy_score, f1_score

from multimodal_fusion.datasets import AudioClip
from multimodal_fusion.intake import raw_record_ids
from multimodal_fusion.monitoring import drift, signal_values
from multimodal_fusion.package import ModelPackage

logger = logging.getLogger(__name__)


def unpack_package(
    model_package: ModelPackage,
) -> tuple[ModelPackage, dict[str, Any], dict[str, Any]]:
    """The package, and the text and audio settings its training data was
    validated and prepared with (the incoming contacts go through the same)."""
    logger.info(
        "Model package %s: %s over %s, %d labels",
        model_package.version,
        model_package.variant,
        "+".join(model_package.modalities),
        len(model_package.classes),
    )
    return (
        model_package,
        model_package.preprocessing["text"],
        model_package.preprocessing["audio"],
    )


def predict_batch(
    package: ModelPackage,
    contacts: pd.DataFrame,
    clean_audio: dict[str, Callable[[], AudioClip]],
    params: dict[str, Any],
    engine: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """One prediction per usable incoming contact (see
    :meth:`ModelPackage.predict_contacts`), with its ``label`` when the batch
    is labelled (empty otherwise).

    Args:
        package: The model package.
        contacts: The joined incoming contacts.
        clean_audio: Their prepared clips, loaded lazily.
        params: ``top_k`` and ``n_jobs`` (audio feature processes).
        engine: Where the clips are featurised (the ``engine`` parameters).
    """
    predictions = package.predict_contacts(
        contacts,
        clean_audio,
        top_k=params["top_k"],
        n_jobs=params["n_jobs"],
        engine=engine,
    )
    predictions.insert(1, "label", contacts["label"].to_numpy())
    logger.info("Predicted %d incoming contacts", len(predictions))
    return predictions


def score_batch(
    raw_texts: pd.DataFrame,
    raw_labels: pd.DataFrame,
    audio_index: pd.DataFrame,
    predictions: pd.DataFrame,
    rejected: pd.DataFrame,
) -> dict[str, Any]:
    """Where every incoming id went, and the batch's scores when it is labelled.

    The incoming ids are those of the raw records (:func:`~multimodal_fusion.
    intake.raw_record_ids`, as training's accounting counts them).

    Returns:
        ``raw_ids`` = ``predicted`` + ``rejected`` (``rejected_ids`` by
        reason), ``modalities`` (contacts per modalities used), and for the
        predicted contacts with a label, ``labelled``, ``accuracy`` and
        ``macro_f1`` (None without labels).

    Raises:
        ValueError: when an id is in neither place or in both (a bug).
    """
    verdicts = rejected[rejected["source"] == "contact"]
    raw_ids = raw_record_ids(raw_texts, raw_labels, audio_index, rejected)
    predicted, refused = set(predictions["id"]), set(verdicts["id"])
    if raw_ids != predicted | refused or predicted & refused:
        raise ValueError(
            f"Accounting error: {len(raw_ids - predicted - refused)} incoming ids "
            f"unaccounted for, {len(predicted & refused)} both predicted and "
            "rejected"
        )
    labelled = predictions[predictions["label"].astype(str) != ""]
    scores: dict[str, Any] = {"accuracy": None, "macro_f1": None}
    if len(labelled):
        truth, guess = labelled["label"].astype(str), labelled["predicted"].astype(str)
        scores = {
            "accuracy": float(accuracy_score(truth, guess)),
            "macro_f1": float(f1_score(truth, guess, average="macro")),
        }
    summary = {
        "raw_ids": len(raw_ids),
        "predicted": len(predicted),
        "rejected": len(refused),
        "rejected_ids": dict(sorted(Counter(verdicts["reason"]).items())),
        "rejected_records": int((rejected["source"] != "contact").sum()),
        "modalities": dict(sorted(Counter(predictions["modalities"]).items())),
        "labelled": len(labelled),
        **scores,
        "variant": str(predictions["variant"].iloc[0]) if len(predictions) else None,
        "package_version": (
            str(predictions["package_version"].iloc[0]) if len(predictions) else None
        ),
    }
    logger.info(
        "Batch: %d ids, %d predicted, %d rejected%s",
        summary["raw_ids"],
        summary["predicted"],
        summary["rejected"],
        f"; accuracy {scores['accuracy']:.3f} on {len(labelled)} labelled"
        if len(labelled)
        else "",
    )
    return summary


def report_drift(
    package: ModelPackage,
    contacts: pd.DataFrame,
    audio_index: pd.DataFrame,
    predictions: pd.DataFrame,
    params: dict[str, Any],
) -> dict[str, Any]:
    """The batch's drift from the training data, signal by signal (PSI against
    the package's reference profile, flagged above ``psi_threshold``)."""
    values = signal_values(
        contacts, audio_index, package.feature_path.token_vocabulary, predictions
    )
    signals = drift(package.reference, values, params["psi_threshold"])
    flagged = sorted(name for name, entry in signals.items() if entry["flagged"])
    if flagged:
        logger.warning(
            "Drift above PSI %.2f in: %s", params["psi_threshold"], ", ".join(flagged)
        )
    return {
        "package_version": package.version,
        "package_test_metrics": package.provenance.get("test_metrics", {}),
        "psi_threshold": params["psi_threshold"],
        "flagged": flagged,
        "signals": signals,
    }


def plot_drift(drift_report: dict[str, Any]) -> go.Figure:
    """PSI per signal, flagged signals in red, with the threshold."""
    signals = {n: s for n, s in drift_report["signals"].items() if s["psi"] is not None}
    figure = go.Figure(
        go.Bar(
            x=list(signals),
            y=[s["psi"] for s in signals.values()],
            marker_color=[
                "#c0392b" if s["flagged"] else "#2e86c1" for s in signals.values()
            ],
        )
    )
    figure.add_hline(y=drift_report["psi_threshold"], line_dash="dash")
    figure.update_layout(
        title="Drift of the incoming batch (population stability index)",
        yaxis_title="PSI",
    )
    return figure


def write_drift_summary(
    drift_report: dict[str, Any], batch_scores: dict[str, Any]
) -> str:
    """A short Markdown page: where the batch went, its scores, its drift."""
    lines = [
        "# Incoming batch",
        "",
        f"Model package {batch_scores['package_version']} ({batch_scores['variant']}).",
        f"{batch_scores['raw_ids']} contacts: {batch_scores['predicted']} predicted, "
        f"{batch_scores['rejected']} rejected"
        + (
            " ("
            + ", ".join(f"{r}: {n}" for r, n in batch_scores["rejected_ids"].items())
            + ")"
            if batch_scores["rejected_ids"]
            else ""
        )
        + ".",
        "Predicted from: "
        + ", ".join(f"{m} {n}" for m, n in batch_scores["modalities"].items())
        + ".",
    ]
    if batch_scores["accuracy"] is not None:
        test = drift_report["package_test_metrics"]
        lines.append(
            f"On the {batch_scores['labelled']} labelled contacts: accuracy "
            f"{batch_scores['accuracy']:.3f}, macro-F1 {batch_scores['macro_f1']:.3f} "
            f"(the model's test split: accuracy {_fmt(test.get('accuracy'))}, "
            f"macro-F1 {_fmt(test.get('macro_f1'))})."
        )
    lines += [
        "",
        f"## Drift (PSI; flagged above {drift_report['psi_threshold']})",
        "",
        "| signal | PSI | training | batch | flagged |",
        "|---|---|---|---|---|",
    ]
    for name, entry in drift_report["signals"].items():
        lines.append(
            f"| {name} | {_fmt(entry['psi'])} | {_side(entry, 'reference_')} | "
            f"{_side(entry, '')} | {'yes' if entry['flagged'] else ''} |"
        )
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _side(entry: dict[str, Any], prefix: str) -> str:
    """A signal's mean (measures) or its most common category, on one side."""
    n = entry[f"{prefix}n" if prefix else "n"]
    if f"{prefix}mean" in entry:
        return f"mean {entry[f'{prefix}mean']:.3g} (n={n})"
    shares = entry.get(f"{prefix}shares")
    if shares:
        top = max(shares, key=shares.get)
        return f"{top} {shares[top]:.0%} (n={n})"
    return f"n={n}"
