"""Per-modality features: TF-IDF and token-id sequences for text, log-mel frames
and pooled statistics for audio. Everything learned from data (vocabularies, idf,
scalers) is fit on the training split only.

Feature sets are dicts aligned with ``contacts`` row by row: ``ids``, the feature
matrices, and ``present`` (whether the row has that modality).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from multimodal_fusion.audio_features import (
    AudioStandardizer,
    log_mel,
    pooled_statistics,
)
from multimodal_fusion.datasets import AudioClip
from multimodal_fusion.text import TextFeaturizer, TokenVocabulary

logger = logging.getLogger(__name__)


def _train_rows(contacts: pd.DataFrame, flag: str) -> pd.Series:
    return (contacts["split"] == "train") & contacts[flag]


def _train_texts(contacts: pd.DataFrame) -> pd.Series:
    return contacts.loc[_train_rows(contacts, "has_text"), "text"]


def _texts(contacts: pd.DataFrame) -> pd.Series:
    """Every contact's text, empty where it has none."""
    return contacts["text"].where(contacts["has_text"], "")


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
    texts = _train_texts(contacts)
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
        "tfidf": featurizer.transform(_texts(contacts)),
        "present": contacts["has_text"].to_numpy(),
    }


def fit_token_vocabulary(
    contacts: pd.DataFrame, params: dict[str, Any]
) -> TokenVocabulary:
    """Fits the word vocabulary of the sequence models on the training texts.

    Args:
        contacts: Split contacts.
        params: ``TokenVocabulary`` hyperparameters.

    Returns:
        The fitted vocabulary (empty when no training row has text).
    """
    vocabulary = TokenVocabulary(**params).fit(_train_texts(contacts))
    logger.info(
        "Token vocabulary: %d words, sequences of %d tokens",
        len(vocabulary.vocabulary_),
        vocabulary.length_,
    )
    return vocabulary


def tokenize_texts(
    contacts: pd.DataFrame, vocabulary: TokenVocabulary
) -> dict[str, Any]:
    """Padded token ids for every contact (all padding where text is missing).

    Returns:
        ``{"ids", "tokens" (int32, n × length), "present"}``.
    """
    return {
        "ids": contacts["id"].to_numpy(),
        "tokens": vocabulary.transform(_texts(contacts)),
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
        ``{"ids", "pooled" (n × d), "frames" (n × t × n_mels), "n_frames",
        "present"}``, float32, unscaled; ``t`` is the longest clip's frame count
        capped at ``max_frames`` (0 when there is no audio).
    """
    n = len(contacts)
    present = contacts["has_audio"].to_numpy()
    mels: dict[int, np.ndarray] = {}
    pooled: dict[int, np.ndarray] = {}
    for row in tqdm(
        np.flatnonzero(present), desc="audio features", unit="clip", mininterval=2
    ):
        clip = clean_audio[contacts["id"].iat[row]]()
        mel = log_mel(
            clip.waveform,
            sample_rate=clip.sample_rate,
            n_fft=params["n_fft"],
            hop_length=params["hop_length"],
            n_mels=params["n_mels"],
        )
        pooled[row] = pooled_statistics(
            mel, n_mfcc=params["n_mfcc"], n_segments=params["n_segments"]
        )
        mels[row] = mel[: params["max_frames"]]
    n_frames = np.zeros(n, np.int32)
    for row, mel in mels.items():
        n_frames[row] = len(mel)
    frames = np.zeros((n, n_frames.max(initial=0), params["n_mels"]), np.float32)
    pooled_matrix = np.zeros((n, len(next(iter(pooled.values()), []))), np.float32)
    for row, mel in mels.items():
        frames[row, : len(mel)] = mel
        pooled_matrix[row] = pooled[row]
    return {
        "ids": contacts["id"].to_numpy(),
        "pooled": pooled_matrix,
        "frames": frames,
        "n_frames": n_frames,
        "present": present,
    }


def fit_audio_standardizer(
    contacts: pd.DataFrame, audio_features: dict[str, Any]
) -> AudioStandardizer:
    """Learns feature means and stds from the training clips only."""
    train = _train_rows(contacts, "has_audio").to_numpy()
    return AudioStandardizer().fit(
        audio_features["pooled"][train],
        audio_features["frames"][train],
        audio_features["n_frames"][train],
    )


def standardize_audio_features(
    audio_features: dict[str, Any], standardizer: AudioStandardizer
) -> dict[str, Any]:
    """Standardised pooled statistics and frames; rows without audio stay zero."""
    pooled, frames = standardizer.transform(
        audio_features["pooled"], audio_features["frames"], audio_features["n_frames"]
    )
    return {**audio_features, "pooled": pooled, "frames": frames}
