"""Featurisation shared by every pipeline that turns contacts into model inputs:
TF-IDF and token-id sequences for text, log-mel frames and pooled statistics for
audio, streamed in chunks; and :class:`FeaturePath`, the fitted featurizers as
one object that featurises new rows exactly like the training contacts
(augmented copies, perturbed test rows, contacts scored by a model package).

Feature sets are dicts aligned with ``contacts`` row by row: ``ids``, the feature
matrices, and ``present`` (whether the row has that modality).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from tqdm import tqdm

from multimodal_fusion.audio_features import (
    AudioFeatureExtractor,
    AudioStandardizer,
    FeatureBatch,
    pad_frames,
)
from multimodal_fusion.datasets import ArrayChunk, AudioClip
from multimodal_fusion.datasets.array_folder_dataset import read_rows
from multimodal_fusion.parallel import map_batches
from multimodal_fusion.persistence import Stateful
from multimodal_fusion.text import TextFeaturizer, TokenVocabulary

logger = logging.getLogger(__name__)

FEATURE_PARAMS = ("n_fft", "hop_length", "n_mels", "n_mfcc", "n_segments", "max_frames")
# Feature parameters added later: a model package saved without them keeps the
# extractor's default (its behaviour then).
OPTIONAL_FEATURE_PARAMS = ("floor_db",)
# Frames held in memory per chunk written or block read (about).
BLOCK_BYTES = 16 * 2**20


def train_rows(contacts: pd.DataFrame, flag: str) -> pd.Series:
    return (contacts["split"] == "train") & contacts[flag]


def train_texts(contacts: pd.DataFrame) -> pd.Series:
    return contacts.loc[train_rows(contacts, "has_text"), "text"]


def _texts(contacts: pd.DataFrame) -> pd.Series:
    """Every contact's text, empty where it has none."""
    return contacts["text"].where(contacts["has_text"], "")


def featurize_texts(
    contacts: pd.DataFrame, featurizer: TextFeaturizer
) -> dict[str, Any]:
    """TF-IDF features for every contact (zero rows where text is missing).

    Returns:
        ``{"ids", "tfidf" (sparse, n × vocab), "present"}``.
    """
    tfidf = (
        featurizer.transform(_texts(contacts))
        if len(contacts)  # scikit-learn refuses to transform no text at all
        else sparse.csr_matrix((0, featurizer.n_features_), dtype=np.float32)
    )
    return {
        "ids": contacts["id"].to_numpy(),
        "tfidf": tfidf,
        "present": contacts["has_text"].to_numpy(),
    }


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
    sample_rate: int,
    engine: dict[str, Any] | None = None,
    *,
    log_cuts: bool = True,
) -> Iterator[ArrayChunk]:
    """Log-mel frames and pooled statistics of every contact, streamed in chunks.

    Clips load lazily, in batches that ``n_jobs`` processes (or a Dask cluster,
    see ``engine``) compute in parallel (identical results for any ``n_jobs``
    and engine); each batch's chunk is yielded, saved
    by the catalog and released, so memory does not grow with the number of
    clips. A progress bar shows clips/s and the time left.

    Args:
        contacts: Split contacts; rows without audio get zero features.
        clean_audio: Prepared clips by id, loaded lazily.
        params: ``n_fft``, ``hop_length``, ``n_mels``, ``max_frames``, ``n_mfcc``,
            ``n_segments``, ``floor_db`` (the features); ``n_jobs`` (processes,
            null for every core) and ``batch_size`` (clips per batch).
        sample_rate: Rate the clips were prepared at; others are resampled.
        engine: Where batches run (the ``engine`` parameters; see
            :class:`~multimodal_fusion.parallel.Engine`); ``None``: local.
        log_cuts: Log how many clips were longer than ``max_frames`` (once, at
            the end).

    Yields:
        Chunks of consecutive contact rows with ``ids``, ``present``,
        ``n_frames`` (frames kept, at most ``max_frames``), ``frames_total``
        (frames of the whole clip; more than ``n_frames`` when it was cut),
        ``pooled`` (rows × d
        float32, zero without audio; d = 0 when no contact has audio) and
        ``frames``: the kept log-mel frames of the chunk's clips, stacked in row
        order (``(sum(n_frames), n_mels)`` float32, unscaled).
    """
    ids = contacts["id"].to_numpy().astype(str)
    present = contacts["has_audio"].to_numpy(dtype=bool)
    rows = np.flatnonzero(present)
    missing = sorted(set(ids[rows].tolist()) - set(clean_audio))
    if missing:
        raise ValueError(
            f"{len(missing)} contacts with has_audio have no clip in clean_audio "
            f"(first: {', '.join(missing[:3])}). Re-run data_processing to rebuild "
            "both."
        )
    extractor = audio_extractor(params, sample_rate)
    chunk = functools.partial(
        _feature_chunk,
        ids,
        present,
        width=extractor.statistics.size if len(rows) else 0,
        n_mels=extractor.n_mels,
    )
    if not len(rows):
        yield chunk(range(len(ids)))
        return
    size = params["batch_size"]
    batches = map_batches(
        functools.partial(extractor.load_and_extract, clean_audio),
        ids[rows],
        batch_size=size,
        n_jobs=params["n_jobs"],
        engine=engine,
    )
    done, pending, lengths = 0, [], []
    with tqdm(
        total=len(rows),
        desc="audio features",
        unit="clip",
        mininterval=2,
        # One batch is done before a bar says anything; off a terminal, no bar.
        disable=True if len(rows) <= size else None,
    ) as progress:
        for start, batch in zip(range(0, len(rows), size), batches, strict=True):
            pending.append((rows[start : start + size], batch))
            lengths.append((batch.frames_total, batch.n_frames))
            progress.update(len(pending[-1][0]))
            last = start + size >= len(rows)
            if last or sum(b.frames.nbytes for _, b in pending) >= BLOCK_BYTES:
                stop = len(ids) if last else pending[-1][0][-1] + 1
                yield chunk(range(done, stop), _merge(pending))
                done, pending = stop, []
    if log_cuts:
        _log_cut_clips(*map(np.concatenate, zip(*lengths, strict=True)), extractor)


def audio_extractor(params: dict[str, Any], sample_rate: int) -> AudioFeatureExtractor:
    """The extractor of the ``feature_extraction.audio`` parameters."""
    optional = {key: params[key] for key in OPTIONAL_FEATURE_PARAMS if key in params}
    return AudioFeatureExtractor(
        sample_rate=sample_rate,
        **{key: params[key] for key in FEATURE_PARAMS},
        **optional,
    )


def _log_cut_clips(
    frames_total: np.ndarray, n_frames: np.ndarray, extractor: AudioFeatureExtractor
) -> None:
    """One line saying how many clips the frame model sees only in part."""
    cut = frames_total > n_frames
    if not cut.any():
        return
    seconds = extractor.log_mel.hop_length / extractor.sample_rate
    logger.warning(
        "%d of %d clips are longer than %.1f s: the frame model sees their first "
        "%.1f s only (%.0f s of audio cut in all; the pooled statistics still "
        "cover every frame). Raise feature_extraction.audio.max_frames (now %d, "
        "null for no limit) to keep more; raw_audio_features holds each clip's "
        "frames_total and n_frames.",
        int(cut.sum()),
        len(cut),
        extractor.max_frames * seconds,
        extractor.max_frames * seconds,
        float((frames_total - n_frames)[cut].sum()) * seconds,
        extractor.max_frames,
    )


def _merge(
    batches: list[tuple[np.ndarray, FeatureBatch]],
) -> tuple[np.ndarray, FeatureBatch]:
    """Consecutive ``(rows, features)`` batches as one."""
    rows = np.concatenate([r for r, _ in batches])
    parts = zip(*(features for _, features in batches), strict=True)
    return rows, FeatureBatch(*(np.concatenate(part) for part in parts))


def _feature_chunk(
    ids: np.ndarray,
    present: np.ndarray,
    span: range,
    batch: tuple[np.ndarray, FeatureBatch] | None = None,
    *,
    width: int,
    n_mels: int,
) -> ArrayChunk:
    """Contact rows ``span``; ``batch`` holds the rows with audio and their
    features."""
    pooled = np.zeros((len(span), width), np.float32)
    n_frames = np.zeros(len(span), np.int32)
    frames_total = np.zeros(len(span), np.int32)
    frames = np.zeros((0, n_mels), np.float32)
    if batch is not None:
        rows, features = batch
        pooled[rows - span.start] = features.pooled
        n_frames[rows - span.start] = features.n_frames
        frames_total[rows - span.start] = features.frames_total
        frames = features.frames
    arrays = {
        "ids": ids[span.start : span.stop],
        "present": present[span.start : span.stop],
        "n_frames": n_frames,
        "frames_total": frames_total,
        "pooled": pooled,
        "frames": frames,
    }
    return ArrayChunk(arrays, first=span.start == 0, last=span.stop == len(ids))


def standardize_audio_features(
    raw_audio_features: dict[str, Any], standardizer: AudioStandardizer
) -> Iterator[ArrayChunk]:
    """Standardised pooled statistics and frames, streamed block by block.

    Yields:
        Chunks of consecutive rows of ``ids``, ``present``, ``n_frames``,
        ``pooled`` (rows × d) and ``frames`` (rows × t × n_mels, zero-padded
        beyond each clip's ``n_frames``; t is the longest clip's frame count),
        float32; rows without audio stay zero.
    """
    n_frames = np.asarray(raw_audio_features["n_frames"])
    width = int(n_frames.max(initial=0))
    for start, stop, *block in feature_blocks(raw_audio_features, width):
        pooled, frames = standardizer.transform(*block)
        arrays = {
            "ids": np.asarray(raw_audio_features["ids"][start:stop]),
            "present": np.asarray(raw_audio_features["present"][start:stop]),
            "n_frames": block[2],
            "pooled": pooled,
            "frames": pad_frames(frames, block[2], width),
        }
        yield ArrayChunk(arrays, first=start == 0, last=stop == len(n_frames))


@dataclass(frozen=True)
class FeaturePath(Stateful):
    """Featurises rows made up after the fact (augmented training copies,
    perturbed test rows) exactly like the contacts: the fitted text featurizer,
    token vocabulary and audio standardiser, the audio feature parameters, and
    the feature widths the models were built on."""

    text_featurizer: TextFeaturizer
    token_vocabulary: TokenVocabulary
    audio_standardizer: AudioStandardizer
    audio_params: dict[str, Any]
    sample_rate: int
    n_frames: int  # frames per row of ``audio_features``
    pooled_width: int

    def text_inputs(self, rows: pd.DataFrame) -> dict[str, Any]:
        """TF-IDF (``text``) and token ids (``text_tokens``) of the rows' texts,
        empty where they have none."""
        return {
            "text": featurize_texts(rows, self.text_featurizer)["tfidf"],
            "text_tokens": tokenize_texts(rows, self.token_vocabulary)["tokens"],
        }

    def audio_inputs(
        self,
        rows: pd.DataFrame,
        clean_audio: dict[str, Callable[[], AudioClip]],
        engine: dict[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """Standardised pooled statistics (``audio``) and frames
        (``audio_frames``, zero-padded to at least ``n_frames``; the networks
        take any length) of the rows, and ``present``: the path of
        ``extract_audio_features`` then ``standardize_audio_features``, in
        memory, on ``engine`` (``None``: local). A clip longer than
        ``max_frames`` is cut there, and logged."""
        raw = gather_chunks(
            extract_audio_features(
                rows,
                clean_audio,
                self.audio_params,
                self.sample_rate,
                engine,
                log_cuts=False,
            )
        )
        n = len(rows)
        width = max(self.n_frames, int(np.max(raw["n_frames"], initial=0)))
        cut = int((raw["frames_total"] > raw["n_frames"]).sum())
        if cut:
            logger.warning(
                "%d of %d clips hold more than max_frames (%d frames): the frame "
                "model sees their first %d frames only.",
                cut,
                int(raw["present"].sum()),
                self.audio_params["max_frames"],
                self.audio_params["max_frames"],
            )
        frames = np.zeros((n, width, self.audio_params["n_mels"]), np.float32)
        pooled = np.zeros((n, self.pooled_width), np.float32)
        if raw["present"].any():
            scaled = gather_chunks(
                standardize_audio_features(raw, self.audio_standardizer)
            )
            steps = scaled["frames"].shape[1]
            frames[:, :steps] = scaled["frames"]
            pooled = scaled["pooled"]
        return {"audio": pooled, "audio_frames": frames, "present": raw["present"]}


def gather_chunks(chunks: Iterable[ArrayChunk]) -> dict[str, np.ndarray]:
    """A streamed feature set concatenated in memory, key by key."""
    parts = [chunk.arrays for chunk in chunks]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def feature_blocks(features: dict[str, Any], width: int | None = None):
    """``(start, stop, pooled, frames, n_frames)`` of consecutive blocks of rows,
    in memory, about ``BLOCK_BYTES`` of (padded) frames each; at least one."""
    n_frames = np.asarray(features["n_frames"])
    offsets = np.concatenate([[0], np.cumsum(n_frames, dtype=np.int64)])
    row_bytes = (
        4 * features["frames"].shape[1] * max(width or n_frames.max(initial=1), 1)
    )
    step = max(1, BLOCK_BYTES // row_bytes)
    for start in range(0, max(len(n_frames), 1), step):
        stop = min(start + step, len(n_frames))
        yield (
            start,
            stop,
            read_rows(features["pooled"], start, stop),
            read_rows(features["frames"], offsets[start], offsets[stop]),
            n_frames[start:stop],
        )


def check_rows(contacts: pd.DataFrame, features: dict[str, Any], name: str) -> None:
    ids = contacts["id"].to_numpy().astype(str)
    if not np.array_equal(np.asarray(features["ids"]), ids):
        raise ValueError(
            f"{name} holds {len(features['ids'])} rows for {len(ids)} contacts, or "
            "in another order. A generator node writes it chunk by chunk: declare "
            "it in the catalog as an ArrayFolderDataset (a MemoryDataset keeps only "
            "the last chunk) and re-run extract_audio_features."
        )
