"""Model inputs, augmented training copies, alignments (CCA and contrastive) and
the training of one model variant. The alignment and variant nodes are
instantiated once per namespace in pipeline.py; scoring them is the evaluation
pipeline's job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from multimodal_fusion.alignment import (
    Alignment,
    CCAAlignment,
    ContrastiveAlignment,
    paired_rows,
)
from multimodal_fusion.datasets import AudioClip
from multimodal_fusion.featurization import FeaturePath
from multimodal_fusion.robustness.audio_robust import augment_clip
from multimodal_fusion.robustness.text_robust import augment_text

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MODALITIES = ("text", "audio")
ALIGNMENT_METHODS = {"cca": CCAAlignment, "contrastive": ContrastiveAlignment}


def _split_part(rows, contacts, text_features, text_tokens, audio_features) -> dict:
    return {
        "ids": contacts["id"].to_numpy()[rows],
        "y": contacts["label"].to_numpy()[rows],
        "inputs": {
            "text": text_features["tfidf"][rows],
            "text_tokens": text_tokens["tokens"][rows],
            "audio": audio_features["pooled"][rows],
            "audio_frames": audio_features["frames"][rows],
        },
        "has": {
            "text": text_features["present"][rows],
            "audio": audio_features["present"][rows],
        },
    }


def build_model_inputs(
    contacts: pd.DataFrame,
    text_features: dict[str, Any],
    text_tokens: dict[str, Any],
    audio_features: dict[str, Any],
    augmented_train: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per split: ids, labels, modality matrices and presence flags.

    Args:
        contacts: Split contacts.
        text_features, text_tokens, audio_features: Feature sets aligned with
            ``contacts`` row by row.
        augmented_train: Augmented copies of the training rows, as a split (see
            :func:`augment_training_split`), if any.

    Returns:
        ``{split: {"ids", "y", "inputs": {"text", "text_tokens", "audio",
        "audio_frames"}, "has": {"text", "audio"}}}`` for train, val, test and,
        given augmented rows, ``train_augmented``.
    """
    features = {
        "text_features": text_features,
        "text_tokens": text_tokens,
        "audio_features": audio_features,
    }
    for name, feature_set in features.items():
        if not np.array_equal(feature_set["ids"], contacts["id"].to_numpy()):
            raise ValueError(
                f"{name} rows are not aligned with contacts: rerun the "
                "feature_extraction pipeline on the current contacts"
            )
    model_inputs = {
        split: _split_part(
            np.flatnonzero(contacts["split"].to_numpy() == split),
            contacts,
            text_features,
            text_tokens,
            audio_features,
        )
        for split in SPLITS
    }
    if augmented_train is not None and len(augmented_train["y"]):
        model_inputs["train_augmented"] = augmented_train
    return model_inputs


def augment_training_split(  # noqa: PLR0917 - a node: Kedro passes inputs by position
    contacts: pd.DataFrame,
    clean_audio: dict[str, Callable[[], AudioClip]],
    feature_path: FeaturePath,
    params: dict[str, Any],
    seed: int,
    engine: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Randomly perturbed copies of the training rows, featurised like them.

    Each copy perturbs every training message (word dropout, typos) and clip
    (speed, time shift, gain, noise at a random SNR), then computes the same
    features with the fitted featurizers; variants with ``augment: true`` train
    on these rows as well. Rows keep their modalities and labels.

    Args:
        contacts: Split contacts.
        clean_audio: Prepared clips by id, loaded lazily.
        feature_path: The fitted featurizers and feature widths.
        params: ``copies`` (0 disables), ``text`` (see
            :func:`~multimodal_fusion.robustness.text_robust.augment_text`) and
            ``audio`` (see
            :func:`~multimodal_fusion.robustness.audio_robust.augment_clip`).
        seed: The project seed.

    Returns:
        A split ``{"ids", "y", "inputs", "has"}`` of ``copies`` × n_train rows;
        ids are ``<id>#aug<k>``.
    """
    rng = np.random.default_rng([seed, 1])
    train = contacts[contacts["split"] == "train"]
    augmented = pd.concat(
        [train.iloc[:0]]
        + [train.assign(id=train["id"] + f"#aug{k}") for k in range(params["copies"])],
        ignore_index=True,
    )
    augmented["text"] = [
        augment_text(text, rng, params["text"]) if has else text
        for text, has in zip(augmented["text"], augmented["has_text"], strict=True)
    ]
    clips = _augmented_clips(augmented["id"], clean_audio, params["audio"], rng)
    audio = feature_path.audio_inputs(augmented, clips, engine)
    logger.info("Augmented training split: %d rows", len(augmented))
    return {
        "ids": augmented["id"].to_numpy(),
        "y": augmented["label"].to_numpy(),
        "inputs": {
            **feature_path.text_inputs(augmented),
            "audio": audio["audio"],
            "audio_frames": audio["audio_frames"],
        },
        "has": {"text": augmented["has_text"].to_numpy(), "audio": audio["present"]},
    }


def _augmented_clips(
    ids: pd.Series,
    clean_audio: dict[str, Callable[[], AudioClip]],
    params: dict[str, Any],
    rng: np.random.Generator,
) -> dict[str, Callable[[], AudioClip]]:
    """Lazy loaders of perturbed clips for augmented ids ``<id>#aug<k>``; each
    clip gets its own seed, so it is the same whenever it is loaded."""

    def loader(source: str, clip_seed: int) -> Callable[[], AudioClip]:
        def load() -> AudioClip:
            clip_rng = np.random.default_rng(clip_seed)
            return augment_clip(clean_audio[source](), clip_rng, params)

        return load

    return {cid: loader(cid.split("#")[0], int(rng.integers(2**32))) for cid in ids}


def _paired(part: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray]:
    """The inputs and labels of a split's rows that have both text and audio."""
    rows = paired_rows(
        part["has"]["text"], part["has"]["audio"], part["inputs"]["text"]
    )
    return {name: matrix[rows] for name, matrix in part["inputs"].items()}, part["y"][
        rows
    ]


def fit_alignment(
    model_inputs: dict[str, Any], params: dict[str, Any], seed: int
) -> Alignment:
    """Fits an alignment on the training rows that have both text and audio.

    Args:
        model_inputs: Splits from :func:`build_model_inputs`.
        params: ``method`` (``cca`` or ``contrastive``) and the hyperparameters
            of :class:`CCAAlignment` or :class:`ContrastiveAlignment`.
        seed: The project seed.

    Returns:
        The fitted alignment (``n_components_`` 0 when there were too few pairs).
    """
    params = dict(params)
    method = params.pop("method")
    if method not in ALIGNMENT_METHODS:
        raise ValueError(
            f"Unknown alignment method '{method}' in parameters_modeling.yml; "
            f"choose one of {sorted(ALIGNMENT_METHODS)}."
        )
    train, train_y = _paired(model_inputs["train"])
    alignment = ALIGNMENT_METHODS[method](**params, seed=seed).fit(
        train, train_y, validation=_paired(model_inputs["val"])
    )
    logger.info(
        "%s alignment: %d dimensions from %d paired rows",
        method,
        alignment.n_components_,
        len(train_y),
    )
    return alignment
