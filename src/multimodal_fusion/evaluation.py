"""Evaluation beyond accuracy: calibration, per-class scores and confusions, and
reading the variant entries of a run's ``metrics``.

Pure functions of labels, predictions and confidences, shared by the evaluation
and reporting nodes and usable from notebooks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support

# Measurements that differ between otherwise identical runs: wall times, and the
# serialised model size (Keras stamps the save time into the file).
RUN_DEPENDENT_KEYS = ("train_seconds", "predict_ms_per_sample", "size_bytes")


def variant_entries(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The model-variant entries of ``metrics`` (those holding ``macro_f1``)."""
    return {n: m for n, m in metrics.items() if isinstance(m, dict) and "macro_f1" in m}


def trained_variants(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The variant entries of ``metrics`` that were trained (not skipped)."""
    return {
        n: m for n, m in variant_entries(metrics).items() if m["status"] == "trained"
    }


def fingerprint(frame: pd.DataFrame, columns: list[str]) -> str:
    """A short SHA-256 of the rows' ``columns``, whatever their order: two
    datasets with the same fingerprint hold the same records."""
    rows = sorted("\t".join(map(str, row)) for row in frame[columns].itertuples(False))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def data_fingerprints(contacts: pd.DataFrame) -> dict[str, Any]:
    """Fingerprints of the split contacts (ids, labels, splits, modalities) and
    of the training ids with their labels."""
    train = contacts[contacts["split"] == "train"]
    return {
        "data_fingerprint": fingerprint(
            contacts, ["id", "label", "split", "has_text", "has_audio"]
        ),
        "train_fingerprint": fingerprint(train, ["id", "label"]),
        "n_train": len(train),
    }


TOP_K = 3  # labels listed per prediction, with their probabilities


def top_labels(
    probabilities: np.ndarray, classes: Sequence[str], k: int
) -> dict[str, list]:
    """Columns ``label_1..k`` and ``probability_1..k``: each row's k most
    probable labels, best first (ties in class order)."""
    k = min(k, len(classes))
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    columns: dict[str, list] = {}
    for rank in range(k):
        picked = order[:, rank]
        columns[f"label_{rank + 1}"] = [classes[i] for i in picked]
        columns[f"probability_{rank + 1}"] = probabilities[
            np.arange(len(picked)), picked
        ].tolist()
    return columns


def bootstrap_macro_f1(labels, predicted, *, resamples: int, seed: int) -> np.ndarray:
    """Macro-F1 of ``resamples`` bootstrap resamples of the rows (drawn with
    replacement from the generator seeded ``[seed, 4]``, so every variant
    scored on the same rows gets the same resamples: differences between two
    variants' scores are paired).

    Vectorised: each resample is a row of counts over the rows, and per-class
    true positives and totals are matrix products. Macro-F1 averages the classes
    present in the resample's labels or predictions, as scikit-learn does.

    Returns:
        ``(resamples,)`` float array.
    """
    labels, predicted = (
        np.asarray(labels).astype(str),
        np.asarray(predicted).astype(str),
    )
    classes = np.union1d(labels, predicted)
    n = len(labels)
    draws = np.random.default_rng([seed, 4]).integers(0, n, (resamples, n))
    counts = np.zeros((resamples, n))
    np.add.at(counts, (np.arange(resamples)[:, None], draws), 1.0)
    truth = labels[:, None] == classes
    guess = predicted[:, None] == classes
    hits = counts @ (truth & guess)
    total = counts @ truth + counts @ guess
    present = total > 0
    f1 = np.divide(2 * hits, total, out=np.zeros_like(hits), where=present)
    return f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def interval(scores, level: float = 0.95) -> list[float]:
    """The central ``level`` percentile interval of bootstrap scores."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(np.asarray(scores), [tail, 100 - tail])
    return [float(low), float(high)]


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int
) -> list[dict[str, float]]:
    """Equal-width confidence bins with their count, mean confidence and accuracy.

    Args:
        confidence: Top-class probability per prediction, in [0, 1].
        correct: Whether each prediction was right.
        n_bins: Number of bins over [0, 1].

    Returns:
        One dict per non-empty bin: ``lower``, ``upper``, ``count``,
        ``confidence`` (mean), ``accuracy``.
    """
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        members = index == b
        if members.any():
            bins.append(
                {
                    "lower": float(edges[b]),
                    "upper": float(edges[b + 1]),
                    "count": int(members.sum()),
                    "confidence": float(confidence[members].mean()),
                    "accuracy": float(correct[members].mean()),
                }
            )
    return bins


def expected_calibration_error(bins: list[dict[str, float]]) -> float:
    """ECE: the count-weighted mean gap between confidence and accuracy."""
    total = sum(b["count"] for b in bins)
    if not total:
        return 0.0
    return float(
        sum(b["count"] * abs(b["confidence"] - b["accuracy"]) for b in bins) / total
    )


def per_class_scores(labels, predicted) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per true class."""
    classes = sorted(set(labels))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    return {
        c: {
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "support": int(s),
        }
        for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
    }


def top_confusions(predictions: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    """The ``n`` most frequent (label, predicted) pairs among the errors."""
    errors = predictions[predictions["label"] != predictions["predicted"]]
    counts = errors.groupby(["label", "predicted"]).size().rename("count").reset_index()
    counts = counts.sort_values(
        ["count", "label", "predicted"], ascending=[False, True, True]
    )
    return counts.head(n).to_dict(orient="records")
