"""Per-modality features: TF-IDF for text, log-mel frames and pooled statistics
for audio. Everything learned from data (vocabulary, idf, scalers) is fit on the
training split only.

Feature sets are dicts aligned with ``contacts`` row by row: ``ids``, the feature
matrices, and ``present`` (whether the row has that modality).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from multimodal_fusion.audio import log_mel, pad_frames, pooled_statistics
from multimodal_fusion.datasets import AudioClip
from multimodal_fusion.text import TextFeaturizer

logger = logging.getLogger(__name__)


def _train_rows(contacts: pd.DataFrame, flag: str) -> pd.Series:
    return (contacts["split"] == "train") & contacts[flag]


def fit_text_featurizer(
    contacts: pd.DataFrame, params: dict[str, Any]
) -> TextFeaturizer:
    """Fits TF-IDF on the training split's texts.

    Args:
        contacts: Split contacts.
        params: ``TextFeaturizer`` hyperparameters.

    Returns:
        The fitted featurizer (zero features when no training row has text).
    """
    texts = contacts.loc[_train_rows(contacts, "has_text"), "text"]
    featurizer = TextFeaturizer(**params).fit(texts)
    logger.info(
        "Text vocabulary: %d features from %d texts", featurizer.n_features_, len(texts)
    )
    return featurizer


def featurize_texts(
    contacts: pd.DataFrame, featurizer: TextFeaturizer
) -> dict[str, Any]:
    """TF-IDF features for every contact (zero rows where text is missing).

    Returns:
        ``{"ids", "tfidf" (sparse, n × vocab), "present"}``.
    """
    return {
        "ids": contacts["id"].to_numpy(),
        "tfidf": featurizer.transform(contacts["text"].where(contacts["has_text"], "")),
        "present": contacts["has_text"].to_numpy(),
    }


def extract_audio_features(
    contacts: pd.DataFrame,
    clean_audio: dict[str, Callable[[], AudioClip]],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Log-mel frames and pooled statistics per contact, one clip at a time.

    Args:
        contacts: Split contacts; rows without audio get zero features.
        clean_audio: Prepared clips by id, loaded lazily.
        params: ``n_fft``, ``hop_length``, ``n_mels``, ``max_frames``, ``n_mfcc``,
            ``n_segments``.

    Returns:
        ``{"ids", "pooled" (n × d), "frames" (n × max_frames × n_mels),
        "n_frames", "present"}``, float32, unscaled.
    """
    n = len(contacts)
    frames = np.zeros((n, params["max_frames"], params["n_mels"]), np.float32)
    n_frames = np.zeros(n, np.int32)
    pooled: list[np.ndarray | None] = [None] * n
    present = contacts["has_audio"].to_numpy()
    rows = np.flatnonzero(present)
    for row in tqdm(rows, desc="audio features", unit="clip", mininterval=2):
        clip = clean_audio[contacts["id"].iat[row]]()
        mel = log_mel(
            clip.waveform,
            sample_rate=clip.sample_rate,
            n_fft=params["n_fft"],
            hop_length=params["hop_length"],
            n_mels=params["n_mels"],
        )
        frames[row] = pad_frames(mel, params["max_frames"])
        n_frames[row] = min(len(mel), params["max_frames"])
        pooled[row] = pooled_statistics(
            mel, n_mfcc=params["n_mfcc"], n_segments=params["n_segments"]
        )
    width = len(pooled[rows[0]]) if len(rows) else 0
    zero = np.zeros(width, np.float32)
    return {
        "ids": contacts["id"].to_numpy(),
        "pooled": np.stack([zero if p is None else p for p in pooled]).reshape(
            n, width
        ),
        "frames": frames,
        "n_frames": n_frames,
        "present": present,
    }


def fit_audio_scaler(
    contacts: pd.DataFrame, audio_features: dict[str, Any]
) -> StandardScaler | None:
    """Standardisation of pooled audio statistics, fit on training clips only.

    Returns:
        The fitted scaler; an unfitted one when no training row has audio.
    """
    train = _train_rows(contacts, "has_audio").to_numpy()
    scaler = StandardScaler()
    if train.any():
        scaler.fit(audio_features["pooled"][train])
    return scaler


def scale_audio_features(
    audio_features: dict[str, Any], scaler: StandardScaler
) -> dict[str, Any]:
    """Applies the scaler to rows with audio; rows without audio stay zero."""
    pooled = audio_features["pooled"].copy()
    present = audio_features["present"]
    if present.any() and hasattr(scaler, "mean_"):
        pooled[present] = scaler.transform(pooled[present]).astype(np.float32)
    return {**audio_features, "pooled": pooled}
