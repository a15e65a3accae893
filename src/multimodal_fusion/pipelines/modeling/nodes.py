"""Model inputs, linear alignment (CCA), and training and evaluation of one model
variant. The variant nodes are instantiated once per namespace in pipeline.py.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from multimodal_fusion.alignment import CCAAlignment, paired_rows, retrieval_recall
from multimodal_fusion.fusion import FusionClassifier

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MODALITIES = ("text", "audio")


def build_model_inputs(
    contacts: pd.DataFrame,
    text_features: dict[str, Any],
    audio_features: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """Per split: ids, labels, modality matrices and presence flags.

    Returns:
        ``{split: {"ids", "y", "inputs": {"text", "audio", "audio_frames"},
        "has": {"text", "audio"}}}`` for train, val and test.
    """
    if not (text_features["ids"] == contacts["id"].to_numpy()).all():
        raise ValueError("text_features rows are not aligned with contacts")
    if not (audio_features["ids"] == contacts["id"].to_numpy()).all():
        raise ValueError("audio_features rows are not aligned with contacts")
    model_inputs = {}
    for split in SPLITS:
        rows = np.flatnonzero(contacts["split"].to_numpy() == split)
        model_inputs[split] = {
            "ids": contacts["id"].to_numpy()[rows],
            "y": contacts["label"].to_numpy()[rows],
            "inputs": {
                "text": text_features["tfidf"][rows],
                "audio": audio_features["pooled"][rows],
                "audio_frames": audio_features["frames"][rows],
            },
            "has": {
                "text": text_features["present"][rows],
                "audio": audio_features["present"][rows],
            },
        }
    return model_inputs


def fit_alignment(
    model_inputs: dict[str, Any], params: dict[str, Any], seed: int
) -> CCAAlignment:
    """Fits CCA on the training rows that have both text and audio."""
    train = model_inputs["train"]
    rows = paired_rows(
        train["has"]["text"], train["has"]["audio"], train["inputs"]["text"]
    )
    text, audio = train["inputs"]["text"][rows], train["inputs"]["audio"][rows]
    alignment = CCAAlignment(**params, seed=seed).fit(text, audio)
    logger.info(
        "CCA alignment: %d components from %d paired rows",
        alignment.n_components_,
        int(rows.sum()),
    )
    return alignment


def align_inputs(
    model_inputs: dict[str, Any], alignment: CCAAlignment
) -> dict[str, Any]:
    """The same splits with each modality projected into the common space.

    A row missing a modality keeps zeros for it in the common space too.
    """
    aligned = {}
    for split, part in model_inputs.items():
        text_z, audio_z = alignment.transform(
            part["inputs"]["text"], part["inputs"]["audio"]
        )
        text_z[~part["has"]["text"]] = 0
        audio_z[~part["has"]["audio"]] = 0
        aligned[split] = {**part, "inputs": {"text": text_z, "audio": audio_z}}
    return aligned


def evaluate_alignment(
    aligned_inputs: dict[str, Any], alignment: CCAAlignment, recall_at: list[int]
) -> dict[str, Any]:
    """Cross-modal retrieval Recall@k on the test rows with both modalities.

    Args:
        aligned_inputs: Output of :func:`align_inputs`.
        alignment: The fitted alignment (for its size).
        recall_at: The k values of Recall@k.

    Returns:
        ``{"method", "n_components", "n_pairs", "status", "text_to_audio",
        "audio_to_text"}`` with model and random-baseline Recall@k and
        label_match@1 per direction.
    """
    test = aligned_inputs["test"]
    rows = test["has"]["text"] & test["has"]["audio"]
    text_z, audio_z = test["inputs"]["text"][rows], test["inputs"]["audio"][rows]
    result = {
        "method": "cca",
        "n_components": int(alignment.n_components_),
        "n_pairs": int(rows.sum()),
    }
    if alignment.n_components_ < 1 or rows.sum() < 2:
        return {
            **result,
            "status": "skipped",
            "reason": "too few rows with both modalities",
        }
    ks = list(recall_at)
    labels = test["y"][rows]
    return {
        **result,
        "status": "evaluated",
        "text_to_audio": retrieval_recall(text_z, audio_z, ks, labels),
        "audio_to_text": retrieval_recall(audio_z, text_z, ks, labels),
    }


def train_classifier(
    model_inputs: dict[str, Any], params: dict[str, Any], seed: int
) -> FusionClassifier:
    """Trains one variant on the train split, early-stopping on val.

    Args:
        model_inputs: Splits from :func:`build_model_inputs` or :func:`align_inputs`.
        params: ``FusionClassifier`` hyperparameters incl. ``modalities``.
        seed: The project seed.

    Returns:
        The fitted classifier (``skipped_reason_`` set when it had no data).
    """
    train, val = model_inputs["train"], model_inputs["val"]
    model = FusionClassifier(**params, seed=seed)
    model.fit(train["inputs"], train["y"], validation=(val["inputs"], val["y"]))
    if model.skipped_reason_:
        logger.warning(
            "Variant with %s skipped: %s", params["modalities"], model.skipped_reason_
        )
    return model


def _macro_f1(model: FusionClassifier, part: dict[str, Any]) -> float:
    return float(f1_score(part["y"], model.predict(part["inputs"]), average="macro"))


def evaluate_classifier(
    model: FusionClassifier, model_inputs: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Test-split metrics and per-contact predictions of one variant.

    Returns:
        Metrics (``accuracy``, ``macro_f1``, ``modalities``, ``split_sizes``,
        training figures; ``status``) and the test predictions
        ``id,label,predicted,confidence,has_text,has_audio``.
    """
    sizes = {split: len(model_inputs[split]["y"]) for split in SPLITS}
    test = model_inputs["test"]
    base = {"modalities": list(model.modalities), "split_sizes": sizes}
    if model.skipped_reason_:
        metrics = {
            **base,
            "status": "skipped",
            "reason": model.skipped_reason_,
            "accuracy": None,
            "macro_f1": None,
        }
        return metrics, pd.DataFrame(columns=["id", "label", "predicted", "confidence"])
    proba = model.predict_proba(test["inputs"])
    predicted = model.classes_[proba.argmax(axis=1)]
    metrics = {
        **base,
        "status": "trained",
        "accuracy": float(accuracy_score(test["y"], predicted)),
        "macro_f1": float(f1_score(test["y"], predicted, average="macro")),
        "val_macro_f1": _macro_f1(model, model_inputs["val"]),
        "n_params": model.n_params_,
        "epochs": len(model.history_["loss"]),
        "train_seconds": round(model.train_seconds_, 2),
    }
    predictions = pd.DataFrame(
        {
            "id": test["ids"],
            "label": test["y"],
            "predicted": predicted,
            "confidence": proba.max(axis=1),
            "has_text": test["has"]["text"],
            "has_audio": test["has"]["audio"],
        }
    )
    return metrics, predictions
