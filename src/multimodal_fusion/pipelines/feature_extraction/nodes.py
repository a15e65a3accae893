"""Per-modality features: fit the text featurizer, the token vocabulary and the
audio standardiser on the training split only, and compute every contact's
features with them (the featurisation itself lives in
:mod:`multimodal_fusion.featurization`, shared with evaluation and inference).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from multimodal_fusion.audio_features import AudioStandardizer
from multimodal_fusion.featurization import (
    FeaturePath,
    check_rows,
    extract_audio_features,
    feature_blocks,
    featurize_texts,
    gather_chunks,
    standardize_audio_features,
    tokenize_texts,
    train_rows,
    train_texts,
)
from multimodal_fusion.text import TextFeaturizer, TokenVocabulary

logger = logging.getLogger(__name__)

__all__ = [
    "extract_audio_features",
    "featurize_texts",
    "fit_audio_standardizer",
    "fit_text_featurizer",
    "fit_token_vocabulary",
    "gather_chunks",
    "make_feature_path",
    "standardize_audio_features",
    "tokenize_texts",
]


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
    texts = train_texts(contacts)
    featurizer = TextFeaturizer(**params).fit(texts)
    logger.info(
        "Text vocabulary: %d features from %d texts", featurizer.n_features_, len(texts)
    )
    return featurizer


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
    vocabulary = TokenVocabulary(**params).fit(train_texts(contacts))
    logger.info(
        "Token vocabulary: %d words, sequences of %d tokens",
        len(vocabulary.vocabulary_),
        vocabulary.length_,
    )
    return vocabulary


def fit_audio_standardizer(
    contacts: pd.DataFrame, raw_audio_features: dict[str, Any]
) -> AudioStandardizer:
    """Learns feature means and stds from the training clips only, reading the
    features block by block."""
    check_rows(contacts, raw_audio_features, "raw_audio_features")
    train = train_rows(contacts, "has_audio").to_numpy()
    standardizer = AudioStandardizer().fit(
        np.zeros((0, raw_audio_features["pooled"].shape[1])),
        np.zeros((0, raw_audio_features["frames"].shape[1])),
    )
    for start, stop, pooled, frames, n_frames in feature_blocks(raw_audio_features):
        keep = train[start:stop]
        standardizer.partial_fit(pooled[keep], frames[np.repeat(keep, n_frames)])
    return standardizer


def make_feature_path(  # noqa: PLR0913, PLR0917 - a node: Kedro passes inputs by position
    text_featurizer: TextFeaturizer,
    token_vocabulary: TokenVocabulary,
    audio_standardizer: AudioStandardizer,
    audio_features: dict[str, Any],
    audio_params: dict[str, Any],
    sample_rate: int,
) -> FeaturePath:
    """The fitted featurizers and the audio feature widths, as one object."""
    return FeaturePath(
        text_featurizer=text_featurizer,
        token_vocabulary=token_vocabulary,
        audio_standardizer=audio_standardizer,
        audio_params=audio_params,
        sample_rate=sample_rate,
        n_frames=int(audio_features["frames"].shape[1]),
        pooled_width=int(audio_features["pooled"].shape[1]),
    )
