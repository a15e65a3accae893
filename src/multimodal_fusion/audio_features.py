"""Audio features: log-mel frames, pooled clip statistics, and their
standardisation with training-split statistics.

Waveforms are float32 mono arrays of shape ``(n_samples,)``; frames are
``(n_frames, n_mels)``.
"""

from __future__ import annotations

import librosa
import numpy as np


def log_mel(
    waveform: np.ndarray, *, sample_rate: int, n_fft: int, hop_length: int, n_mels: int
) -> np.ndarray:
    """Log-mel spectrogram in dB, shape ``(n_frames, n_mels)``, float32."""
    mel = librosa.feature.melspectrogram(
        y=waveform, sr=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels
    )
    return librosa.power_to_db(mel, ref=1.0, top_db=80.0).T.astype(np.float32)


def pooled_statistics(log_mel_frames: np.ndarray, *, n_mfcc: int, n_segments: int):
    """Clip-level statistics from log-mel frames, float32 vector.

    MFCCs with their deltas and delta-deltas (mean and std over time), log-mel
    mean and std, and MFCC means over ``n_segments`` equal time segments (a coarse
    view of the order of sounds).
    """
    mfcc = librosa.feature.mfcc(S=log_mel_frames.T, n_mfcc=n_mfcc)
    width = min(9, mfcc.shape[1] - (1 - mfcc.shape[1] % 2))
    if width >= 3:
        delta = librosa.feature.delta(mfcc, width=width)
        delta2 = librosa.feature.delta(mfcc, order=2, width=width)
    else:
        delta = delta2 = np.zeros_like(mfcc)
    parts = [
        stat(block, axis=1)
        for block in (mfcc, delta, delta2, log_mel_frames.T)
        for stat in (np.mean, np.std)
    ]
    parts += _segment_means(mfcc, n_segments)
    return np.nan_to_num(np.concatenate(parts)).astype(np.float32)


def _segment_means(features: np.ndarray, n_segments: int) -> list[np.ndarray]:
    """Means over ``n_segments`` equal time spans; short clips reuse frames."""
    n_frames = features.shape[1]
    edges = np.linspace(0, n_frames, n_segments + 1)
    starts = np.minimum(edges[:-1].astype(int), n_frames - 1)
    stops = np.maximum(edges[1:].astype(int), starts + 1)
    return [features[:, a:b].mean(axis=1) for a, b in zip(starts, stops, strict=True)]


class AudioStandardizer:
    """Standardises pooled statistics and log-mel frames with statistics learned
    from training clips only.

    Follows scikit-learn's conventions: ``__init__`` stores hyperparameters,
    ``fit`` returns ``self``, learned attributes end in ``_``. Padding frames
    (beyond a clip's ``n_frames``) and rows without audio stay zero.

    Args:
        eps: Floor of the standard deviations, so constant features stay finite.
    """

    def __init__(self, *, eps: float = 1e-6) -> None:
        self.eps = eps

    def fit(
        self, pooled: np.ndarray, frames: np.ndarray, n_frames: np.ndarray
    ) -> AudioStandardizer:
        """Learns means and stds from ``pooled`` ``(n, d)`` and the valid frames
        of ``frames`` ``(n, t, n_mels)``; all rows are training clips."""
        valid = frames[_frame_mask(frames, n_frames)]
        self.pooled_mean_, self.pooled_std_ = self._moments(pooled, pooled.shape[1])
        self.frame_mean_, self.frame_std_ = self._moments(valid, frames.shape[2])
        return self

    def transform(
        self, pooled: np.ndarray, frames: np.ndarray, n_frames: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Standardised copies of ``pooled`` and ``frames`` (float32)."""
        present = n_frames > 0
        pooled_out = np.zeros_like(pooled)
        pooled_out[present] = (pooled[present] - self.pooled_mean_) / self.pooled_std_
        mask = _frame_mask(frames, n_frames)
        frames_out = np.zeros_like(frames)
        frames_out[mask] = (frames[mask] - self.frame_mean_) / self.frame_std_
        return pooled_out, frames_out

    def _moments(self, rows: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        if len(rows) == 0:
            return np.zeros(width, np.float32), np.ones(width, np.float32)
        mean = rows.mean(axis=0, dtype=np.float64)
        std = np.maximum(rows.std(axis=0, dtype=np.float64), self.eps)
        return mean.astype(np.float32), std.astype(np.float32)


def _frame_mask(frames: np.ndarray, n_frames: np.ndarray) -> np.ndarray:
    """``(n, t)`` booleans: True for a clip's real (not padding) frames."""
    return np.arange(frames.shape[1])[None, :] < np.asarray(n_frames)[:, None]
