"""Drift monitoring: how a batch of new contacts differs from the training data.

Each *signal* is a per-contact measure (text length, out-of-vocabulary share,
clip duration, loudness, SNR estimate, confidence) or a category (available
modalities, predicted label). A *profile* of the reference data holds, per
signal, its histogram: quantile bins for measures, shares for categories. The
population stability index (PSI) of a batch against the profile is
``sum((cur - ref) * ln(cur / ref))`` over the bins; by the usual rule of thumb
below 0.1 is stable, 0.1-0.25 a moderate shift, above 0.25 a major one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from multimodal_fusion.text import TokenVocabulary, tokenize

# Signal → whether it is a measure (binned at the reference's quantiles) or a
# category (its own shares).
SIGNALS = {
    "modalities": "category",
    "text_length": "measure",
    "oov_share": "measure",
    "clip_duration_s": "measure",
    "loudness_dbfs": "measure",
    "snr_db": "measure",
    "predicted_label": "category",
    "confidence": "measure",
}
# Floor of a bin's share, so an empty bin does not make the PSI infinite.
_FLOOR = 1e-4


def modality_of(has_text: bool, has_audio: bool) -> str:
    """``text+audio``, ``text`` or ``audio``: what a contact was predicted from."""
    return "+".join(m for m, has in (("text", has_text), ("audio", has_audio)) if has)


def oov_share(text: str, vocabulary: TokenVocabulary) -> float:
    """Share of a text's words outside the vocabulary (NaN for no words)."""
    words = tokenize(text)
    if not words:
        return float("nan")
    return sum(w not in vocabulary.vocabulary_ for w in words) / len(words)


def signal_values(
    contacts: pd.DataFrame,
    audio_index: pd.DataFrame,
    vocabulary: TokenVocabulary,
    predictions: pd.DataFrame,
) -> dict[str, list]:
    """Every signal's values over a set of contacts.

    Args:
        contacts: ``id,text,has_text,has_audio`` (clean text).
        audio_index: The contacts' clips (``id,duration_s,rms_dbfs,snr_db``).
        vocabulary: The token vocabulary the model reads.
        predictions: ``predicted`` and ``probability`` (or ``confidence``) per
            contact.

    Returns:
        ``{signal: values}``; text measures over contacts with text, clip
        measures over clips.
    """
    texts = contacts.loc[contacts["has_text"], "text"]
    clips = audio_index[audio_index["id"].isin(contacts["id"])]
    confidence = predictions.get("probability", predictions.get("confidence"))
    values = {
        "modalities": [
            modality_of(t, a)
            for t, a in zip(contacts["has_text"], contacts["has_audio"], strict=True)
        ],
        "text_length": texts.str.len().tolist(),
        "oov_share": [oov_share(t, vocabulary) for t in texts],
        "clip_duration_s": clips["duration_s"].tolist(),
        "loudness_dbfs": clips["rms_dbfs"].tolist(),
        "snr_db": clips["snr_db"].tolist(),
        "predicted_label": predictions["predicted"].astype(str).tolist(),
        "confidence": [] if confidence is None else confidence.tolist(),
    }
    return {name: [v for v in vs if not pd.isna(v)] for name, vs in values.items()}


def profile(values: dict[str, list], n_bins: int = 10) -> dict[str, Any]:
    """The reference histogram of every signal (see the module docstring)."""
    result = {}
    for name, kind in SIGNALS.items():
        observed = values.get(name, [])
        entry: dict[str, Any] = {"kind": kind, "n": len(observed)}
        if kind == "category":
            shares = pd.Series(observed, dtype=object).value_counts(normalize=True)
            entry["shares"] = {str(k): float(v) for k, v in shares.items()}
        elif observed:
            inner = np.unique(
                np.quantile(observed, np.linspace(0, 1, n_bins + 1)[1:-1])
            )
            entry["edges"] = [float(e) for e in inner]
            entry["shares"] = _bin_shares(observed, inner).tolist()
            entry["mean"] = float(np.mean(observed))
        result[name] = entry
    return result


def _bin_shares(values: list, inner_edges) -> np.ndarray:
    counts = np.bincount(
        np.searchsorted(inner_edges, values, side="right"),
        minlength=len(inner_edges) + 1,
    )
    return counts / max(counts.sum(), 1)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    ref = np.maximum(np.asarray(reference, float), _FLOOR)
    cur = np.maximum(np.asarray(current, float), _FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def drift(
    reference: dict[str, Any], values: dict[str, list], threshold: float
) -> dict[str, dict[str, Any]]:
    """Every signal's PSI against the reference profile, flagged above
    ``threshold``; a signal without values on either side is ``not_measured``.

    Returns:
        ``{signal: {"kind", "n", "reference_n", "psi", "flagged", ...}}`` with
        the means (measures) or the shares (categories) of both sides.
    """
    report = {}
    for name, ref in reference.items():
        observed = values.get(name, [])
        entry = {"kind": ref["kind"], "n": len(observed), "reference_n": ref["n"]}
        if not observed or not ref["n"]:
            report[name] = {
                **entry,
                "psi": None,
                "flagged": False,
                "not_measured": True,
            }
            continue
        if ref["kind"] == "category":
            current = pd.Series(observed, dtype=object).value_counts(normalize=True)
            labels = sorted(set(ref["shares"]) | set(current.index.astype(str)))
            cur = {str(k): float(v) for k, v in current.items()}
            score = psi(
                [ref["shares"].get(k, 0.0) for k in labels],
                [cur.get(k, 0.0) for k in labels],
            )
            entry.update(reference_shares=ref["shares"], shares=cur)
        else:
            score = psi(ref["shares"], _bin_shares(observed, ref["edges"]))
            entry.update(reference_mean=ref["mean"], mean=float(np.mean(observed)))
        report[name] = {**entry, "psi": round(score, 4), "flagged": score > threshold}
    return report
