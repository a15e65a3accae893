"""Audio features: log-mel frames, pooled clip statistics, and their
standardisation with training-split statistics.

Everything is float32 NumPy/SciPy computed on batches of clips: the window, the
mel filterbank, the DCT matrix and the delta filters are computed once per
configuration, the frames of a whole batch go through one FFT and one matrix
product, and per-clip statistics are segment reductions over the batch. The
results match librosa's ``melspectrogram`` + ``power_to_db(top_db=floor_db)``,
``mfcc`` and ``delta`` (``mode="interp"``) to float32 rounding; librosa itself is
not called.

Waveforms are float32 mono arrays of shape ``(n_samples,)``. A batch's frames are
*ragged*: the frames of all its clips stacked, shape ``(sum(n_frames), n_mels)``,
with ``n_frames`` giving each clip's share, in order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import scipy.fft
import scipy.ndimage
import scipy.signal
import soxr

from multimodal_fusion.audio import to_mono
from multimodal_fusion.datasets import AudioClip
from multimodal_fusion.persistence import Stateful

TOP_DB = 80.0
AMIN = 1e-10
DELTA_WIDTH = 9
# Frames per FFT block: small temporaries (1 MB at n_fft=512) stay in the
# allocator's reuse pool; larger ones cost page faults (measured).
FFT_BLOCK_FRAMES = 512


def clip_starts(n_frames: np.ndarray) -> np.ndarray:
    """Index of each clip's first row in ragged frames."""
    return np.concatenate([[0], np.cumsum(n_frames)[:-1]]).astype(np.int64)


def _local_index(n_frames: np.ndarray) -> np.ndarray:
    """For every ragged row, its position inside its clip."""
    return np.arange(int(n_frames.sum())) - np.repeat(clip_starts(n_frames), n_frames)


class LogMel:
    """Log-mel spectrogram (dB, ``ref=1``) of a batch of clips, floored
    ``floor_db`` below each clip's loudest cell.

    Same frames as ``librosa.feature.melspectrogram`` (centred, zero-padded, Hann
    window, power 2, Slaney mel filterbank) followed by ``librosa.power_to_db``
    with ``top_db=floor_db``, per clip.

    The floor is what makes the features hold under background noise: cells
    far below the clip's peak (exact digital silence, quiet bands between
    words) are wiped out by any noise, so a model that learned their values on
    clean recordings fails on noisy ones. Below the floor every clip looks the
    same, clean or not.

    Args:
        sample_rate: Rate of the waveforms in Hz.
        n_fft: FFT size in samples (also the window length).
        hop_length: Step between frames in samples.
        n_mels: Number of mel bands.
        floor_db: Dynamic range kept below each clip's loudest cell, in dB
            (librosa's ``top_db``, 80 by default).

    Raises:
        ValueError: when a size is not a positive integer or ``floor_db`` is not
            positive.
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        n_fft: int,
        hop_length: int,
        n_mels: int,
        floor_db: float = TOP_DB,
    ) -> None:
        _check_positive(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels
        )
        if not floor_db > 0:
            raise ValueError(
                f"floor_db must be a positive number of dB, got {floor_db}"
            )
        self.floor_db = float(floor_db)
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self._window = scipy.signal.get_window("hann", n_fft).astype(np.float32)
        self._mel_basis = mel_filterbank(
            sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels
        )

    def n_frames(self, n_samples: np.ndarray) -> np.ndarray:
        """Frames of clips of ``n_samples`` samples (centred framing), ≥ 1."""
        padded = np.asarray(n_samples) + 2 * (self.n_fft // 2)
        return np.maximum(1 + (padded - self.n_fft) // self.hop_length, 1)

    def __call__(
        self, waveforms: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ragged log-mel frames of a batch.

        Args:
            waveforms: Mono float32 clips at ``sample_rate``.

        Returns:
            ``frames`` ``(sum(n_frames), n_mels)`` float32 and ``n_frames`` ``(b,)``.
        """
        hop, half = self.hop_length, self.n_fft // 2
        lengths = np.array([len(w) for w in waveforms], dtype=np.int64)
        n_frames = self.n_frames(lengths)
        # Each clip gets a hop-aligned slot of one buffer, so a single strided view
        # frames the whole batch; frames never cross into a neighbouring slot.
        needed = np.maximum((n_frames - 1) * hop + self.n_fft, half + lengths)
        slots = -(-needed // hop) * hop
        offsets = np.concatenate([[0], np.cumsum(slots)])
        buffer = np.zeros(int(offsets[-1]) + self.n_fft, np.float32)
        for waveform, offset in zip(waveforms, offsets[:-1], strict=True):
            buffer[offset + half : offset + half + len(waveform)] = waveform
        windows = np.lib.stride_tricks.sliding_window_view(buffer, self.n_fft)[::hop]
        rows = np.repeat(offsets[:-1] // hop, n_frames) + _local_index(n_frames)
        mel = np.empty((len(rows), self.n_mels), np.float32)
        for start in range(0, len(rows), FFT_BLOCK_FRAMES):
            block = rows[start : start + FFT_BLOCK_FRAMES]
            spectrum = scipy.fft.rfft(windows[block] * self._window, axis=1)
            power = np.square(spectrum.real) + np.square(spectrum.imag)
            mel[start : start + len(block)] = power @ self._mel_basis
        db = 10.0 * np.log10(np.maximum(mel, AMIN, out=mel), out=mel)
        peak = np.maximum.reduceat(db.max(axis=1), clip_starts(n_frames))
        floor = peak - self.floor_db
        np.maximum(db, np.repeat(floor, n_frames)[:, None], out=db)
        return db, n_frames


def mel_filterbank(*, sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-style mel filterbank, area-normalised, from 0 Hz to Nyquist, as
    ``librosa.filters.mel``; shape ``(n_fft // 2 + 1, n_mels)`` float32."""
    fft_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(sample_rate / 2.0), n_mels + 2))
    ramps = edges[:, None] - fft_hz[None, :]
    widths = np.diff(edges)
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return np.ascontiguousarray(weights.T, dtype=np.float32)


# Slaney's mel scale: linear below 1 kHz, logarithmic above.
_MEL_STEP_HZ = 200.0 / 3
_LOG_FROM_HZ = 1000.0
_LOG_FROM_MEL = _LOG_FROM_HZ / _MEL_STEP_HZ
_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz):
    hz = np.asarray(hz, dtype=np.float64)
    log = (
        _LOG_FROM_MEL + np.log(np.maximum(hz, _LOG_FROM_HZ) / _LOG_FROM_HZ) / _LOG_STEP
    )
    return np.where(hz >= _LOG_FROM_HZ, log, hz / _MEL_STEP_HZ)


def _mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    log = _LOG_FROM_HZ * np.exp(
        _LOG_STEP * (np.maximum(mel, _LOG_FROM_MEL) - _LOG_FROM_MEL)
    )
    return np.where(mel >= _LOG_FROM_MEL, log, mel * _MEL_STEP_HZ)


class PooledStatistics:
    """Clip-level statistics from ragged log-mel frames.

    Per clip: MFCCs (DCT-II, orthonormal, of the log-mel frames) with their
    deltas and delta-deltas (Savitzky-Golay, ``width=min(9, n_frames)`` rounded
    down to odd, as ``librosa.feature.delta`` with ``mode="interp"``; zero for
    clips shorter than 3 frames), each as mean and std over time; log-mel mean and
    std; and MFCC means over ``n_segments`` equal time spans (a coarse view of the
    order of sounds; short clips reuse frames).

    Args:
        n_mels: Mel bands of the input frames.
        n_mfcc: MFCCs kept (≤ ``n_mels``).
        n_segments: Time spans of the segment means.
    """

    def __init__(self, *, n_mels: int, n_mfcc: int, n_segments: int) -> None:
        _check_positive(n_mels=n_mels, n_mfcc=n_mfcc, n_segments=n_segments)
        if n_mfcc > n_mels:
            raise ValueError(f"n_mfcc={n_mfcc} exceeds n_mels={n_mels}")
        self.n_mels = n_mels
        self.n_mfcc = n_mfcc
        self.n_segments = n_segments
        dct = scipy.fft.dct(np.eye(n_mels), type=2, norm="ortho", axis=0)
        self._dct = np.ascontiguousarray(dct[:n_mfcc].T, dtype=np.float32)
        self._savgol = {
            (width, order): scipy.signal.savgol_coeffs(
                width, order, deriv=order, use="dot"
            )
            for width in range(3, DELTA_WIDTH + 1, 2)
            for order in (1, 2)
        }

    @property
    def size(self) -> int:
        """Length of a clip's statistics vector."""
        return (6 + self.n_segments) * self.n_mfcc + 2 * self.n_mels

    def __call__(self, frames: np.ndarray, n_frames: np.ndarray) -> np.ndarray:
        """Statistics ``(b, size)`` float32 of ragged frames ``(sum(n_frames),
        n_mels)`` with ``n_frames`` ``(b,)``, every entry ≥ 1."""
        n_frames = np.asarray(n_frames, dtype=np.int64)
        starts = clip_starts(n_frames)
        k = self.n_mfcc
        # Features × time (librosa's layout), float64: reductions over time run
        # along contiguous rows, several times faster than down columns.
        blocks = np.zeros((3 * k + self.n_mels, len(frames)))
        mfcc = blocks[:k]
        mfcc[:] = self._dct.T @ frames.T
        for width, at, source in self._delta_windows(n_frames):
            for order, delta in ((1, blocks[k : 2 * k]), (2, blocks[2 * k : 3 * k])):
                coeffs = self._savgol[(width, order)]
                delta[:, at] = scipy.ndimage.correlate1d(mfcc, coeffs)[:, source]
        blocks[3 * k :] = frames.T
        mean = np.add.reduceat(blocks, starts, axis=1) / n_frames
        # E[x^2] - E[x]^2 in float64 is exact enough for dB-scale features.
        square = np.add.reduceat(np.square(blocks), starts, axis=1) / n_frames
        std = np.sqrt(np.maximum(square - np.square(mean), 0.0))
        bounds = np.cumsum([0, k, k, k, self.n_mels])
        parts = [
            moment[a:b].T
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
            for moment in (mean, std)
        ]
        parts.append(self._segment_means(mfcc, n_frames, starts))
        return np.nan_to_num(np.hstack(parts)).astype(np.float32)

    @staticmethod
    def _delta_windows(n_frames: np.ndarray):
        """Per delta width, the frames whose clips use it and, for each, the
        frame its filter is centred on: the frame itself inside the clip, the
        first (last) full window's centre at the edges, where the polynomial
        fitted by ``mode="interp"`` has a constant derivative. Clips shorter
        than 3 frames get no delta (zero)."""
        widths = np.minimum(DELTA_WIDTH, n_frames - (1 - n_frames % 2))
        starts = clip_starts(n_frames)
        local = _local_index(n_frames)
        clip = np.repeat(np.arange(len(n_frames)), n_frames)
        for width in np.unique(widths[widths >= 3]).tolist():
            at = np.flatnonzero(widths[clip] == width)
            half = width // 2
            centre = np.clip(local[at], half, n_frames[clip[at]] - 1 - half)
            yield width, at, starts[clip[at]] + centre

    def _segment_means(
        self, mfcc: np.ndarray, n_frames: np.ndarray, starts: np.ndarray
    ) -> np.ndarray:
        """``(b, n_segments * n_mfcc)`` MFCC means over equal time spans."""
        edges = np.linspace(0, n_frames, self.n_segments + 1, axis=1)
        lo = np.minimum(edges[:, :-1].astype(np.int64), n_frames[:, None] - 1)
        hi = np.maximum(edges[:, 1:].astype(np.int64), lo + 1)
        cumulative = np.hstack([np.zeros((len(mfcc), 1)), np.cumsum(mfcc, axis=1)])
        sums = cumulative[:, starts[:, None] + hi] - cumulative[:, starts[:, None] + lo]
        means = sums / (hi - lo)  # (n_mfcc, b, n_segments)
        return means.transpose(1, 2, 0).reshape(len(n_frames), -1)


def pad_frames(frames: np.ndarray, n_frames: np.ndarray, width: int) -> np.ndarray:
    """Ragged frames as a zero-padded ``(b, width, n_mels)`` array; ``width`` is
    at least every entry of ``n_frames`` (0 for a clip without audio)."""
    n_frames = np.asarray(n_frames, dtype=np.int64)
    dense = np.zeros((len(n_frames), width, frames.shape[1]), frames.dtype)
    clip = np.repeat(np.arange(len(n_frames)), n_frames)
    dense[clip, _local_index(n_frames)] = frames
    return dense


class FeatureBatch(NamedTuple):
    """Features of a batch of clips.

    Attributes:
        pooled: ``(b, d)`` float32 clip statistics (over the whole clip).
        frames: Ragged log-mel frames, each clip's first ``n_frames`` frames.
        n_frames: ``(b,)`` int32 frames kept per clip (≤ ``max_frames``).
        frames_total: ``(b,)`` int32 frames of each whole clip; more than
            ``n_frames`` when the clip was cut.
    """

    pooled: np.ndarray
    frames: np.ndarray
    n_frames: np.ndarray
    frames_total: np.ndarray


class AudioFeatureExtractor:
    """Log-mel frames and pooled statistics of batches of clips.

    Clips at another rate are resampled to ``sample_rate`` (soxr, high quality,
    as ``librosa.resample``); multichannel clips are averaged to mono.

    Args:
        sample_rate: Rate the features are computed at, in Hz.
        n_fft, hop_length, n_mels: The log-mel frames (see :class:`LogMel`).
        n_mfcc, n_segments: The pooled statistics (see :class:`PooledStatistics`).
        max_frames: Frames kept per clip for sequence models (the first ones; a
            longer clip is cut, and counted in ``frames_total``), None for every
            frame; the statistics use every frame.
        floor_db: Log-mel cells more than this many dB below the clip's
            loudest cell are raised to that floor (see :class:`LogMel`).
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        n_fft: int,
        hop_length: int,
        n_mels: int,
        n_mfcc: int,
        n_segments: int,
        max_frames: int | None,
        floor_db: float = TOP_DB,
    ) -> None:
        if max_frames is not None:
            _check_positive(max_frames=max_frames)
        self.max_frames = max_frames
        self.log_mel = _log_mel_front_end(
            sample_rate, n_fft, hop_length, n_mels, floor_db
        )
        self.statistics = _pooled_statistics(n_mels, n_mfcc, n_segments)

    @property
    def sample_rate(self) -> int:
        return self.log_mel.sample_rate

    @property
    def n_mels(self) -> int:
        return self.log_mel.n_mels

    def __call__(self, clips: Sequence[AudioClip]) -> FeatureBatch:
        """Features of decoded clips, in order."""
        waveforms = [self._prepare(clip) for clip in clips]
        frames, n_frames = self.log_mel(waveforms)
        pooled = self.statistics(frames, n_frames)
        kept = (
            n_frames
            if self.max_frames is None
            else np.minimum(n_frames, self.max_frames)
        )
        keep = _local_index(n_frames) < np.repeat(kept, n_frames)
        return FeatureBatch(
            pooled, frames[keep], kept.astype(np.int32), n_frames.astype(np.int32)
        )

    def load_and_extract(
        self, loaders: Mapping[str, Callable[[], AudioClip]], ids: Sequence[str]
    ) -> FeatureBatch:
        """Decodes the clips of ``ids`` with their ``loaders``, then
        :meth:`__call__`; one process's share of a parallel extraction.

        Raises:
            ValueError: naming the clip, when it fails to decode or holds
                non-finite samples.
        """
        clips = []
        for clip_id in ids:
            try:
                clip = loaders[clip_id]()
            except Exception as err:
                raise ValueError(
                    f"Cannot decode the clip of contact '{clip_id}': {err}. Re-run "
                    "data_processing, which quarantines undecodable clips."
                ) from err
            if not np.isfinite(clip.waveform).all():
                raise ValueError(
                    f"The clip of contact '{clip_id}' holds NaN or inf samples. "
                    "Re-run data_processing, which quarantines such clips."
                )
            clips.append(clip)
        return self(clips)

    def _prepare(self, clip: AudioClip) -> np.ndarray:
        waveform = to_mono(clip.waveform)
        if clip.sample_rate == self.sample_rate:
            return waveform
        return resample(waveform, clip.sample_rate, self.sample_rate)


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Mono float32 resampled with soxr's high quality, ``ceil(n * ratio)``
    samples long (``librosa.resample(res_type="soxr_hq")``)."""
    n_out = int(np.ceil(len(waveform) * target_sr / orig_sr))
    out = soxr.resample(waveform, orig_sr, target_sr, quality="HQ")
    return np.pad(out, (0, max(0, n_out - len(out))))[:n_out].astype(np.float32)


@functools.lru_cache(maxsize=16)
def _log_mel_front_end(
    sample_rate: int, n_fft: int, hop_length: int, n_mels: int, floor_db: float
) -> LogMel:
    return LogMel(
        sample_rate=sample_rate,
        n_fft=n_fft,
        hop_length=hop_length,
        n_mels=n_mels,
        floor_db=floor_db,
    )


@functools.lru_cache(maxsize=16)
def _pooled_statistics(n_mels: int, n_mfcc: int, n_segments: int) -> PooledStatistics:
    return PooledStatistics(n_mels=n_mels, n_mfcc=n_mfcc, n_segments=n_segments)


def log_mel(
    waveform: np.ndarray, *, sample_rate: int, n_fft: int, hop_length: int, n_mels: int
) -> np.ndarray:
    """Log-mel spectrogram in dB of one clip, shape ``(n_frames, n_mels)``."""
    front_end = _log_mel_front_end(sample_rate, n_fft, hop_length, n_mels, TOP_DB)
    return front_end([np.asarray(waveform, dtype=np.float32)])[0]


def pooled_statistics(
    log_mel_frames: np.ndarray, *, n_mfcc: int, n_segments: int
) -> np.ndarray:
    """Statistics vector of one clip's log-mel frames ``(n_frames, n_mels)``."""
    statistics = _pooled_statistics(log_mel_frames.shape[1], n_mfcc, n_segments)
    return statistics(log_mel_frames, np.array([len(log_mel_frames)]))[0]


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class AudioStandardizer(Stateful):
    """Standardises pooled statistics and log-mel frames with statistics learned
    from training clips only, streaming: ``partial_fit`` takes the training data
    chunk by chunk (Chan's pairwise update of mean and variance, float64).

    Follows scikit-learn's conventions: ``__init__`` stores hyperparameters,
    ``fit`` returns ``self``, learned attributes end in ``_``. Rows without audio
    (``n_frames == 0``) stay zero.

    Args:
        eps: Floor of the standard deviations, so constant features stay finite.
    """

    def __init__(self, *, eps: float = 1e-6) -> None:
        self.eps = eps

    def fit(self, pooled: np.ndarray, frames: np.ndarray) -> AudioStandardizer:
        """Learns means and stds from ``pooled`` ``(n, d)`` and ragged ``frames``
        ``(m, n_mels)``; all rows come from training clips."""
        self._pooled_moments = self._frames_moments = None
        return self.partial_fit(pooled, frames)

    def partial_fit(self, pooled: np.ndarray, frames: np.ndarray) -> AudioStandardizer:
        """Adds one chunk of training rows to the learned statistics."""
        self._pooled_moments = _merge_moments(
            getattr(self, "_pooled_moments", None), pooled
        )
        self._frames_moments = _merge_moments(
            getattr(self, "_frames_moments", None), frames
        )
        self.n_clips_seen_ = int(self._pooled_moments[0])
        self.n_frames_seen_ = int(self._frames_moments[0])
        self.pooled_mean_, self.pooled_std_ = self._finish(self._pooled_moments)
        self.frame_mean_, self.frame_std_ = self._finish(self._frames_moments)
        return self

    def transform(
        self, pooled: np.ndarray, frames: np.ndarray, n_frames: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Standardised copies (float32) of ``pooled`` ``(n, d)`` and of the
        ragged ``frames`` of those rows; ``n_frames`` ``(n,)`` marks rows without
        audio (0), whose statistics stay zero."""
        present = np.asarray(n_frames) > 0
        pooled_out = np.zeros(pooled.shape, np.float32)
        pooled_out[present] = (pooled[present] - self.pooled_mean_) / self.pooled_std_
        frames_out = np.subtract(frames, self.frame_mean_, dtype=np.float32)
        frames_out /= self.frame_std_
        return pooled_out, frames_out

    def _finish(self, moments) -> tuple[np.ndarray, np.ndarray]:
        count, mean, m2 = moments
        if count == 0:
            return np.zeros_like(mean, np.float32), np.ones_like(mean, np.float32)
        std = np.maximum(np.sqrt(m2 / count), self.eps)
        return mean.astype(np.float32), std.astype(np.float32)


def _merge_moments(moments, rows: np.ndarray):
    """``(count, mean, M2)`` of ``moments`` plus ``rows`` (Chan et al.),
    accumulated in float64 without a float64 copy of ``rows``."""
    count_b = len(rows)
    if count_b:
        mean_b = rows.mean(axis=0, dtype=np.float64)
        m2_b = rows.var(axis=0, dtype=np.float64) * count_b
    else:
        mean_b = m2_b = np.zeros(rows.shape[1])
    if moments is None or moments[0] == 0:
        return count_b, mean_b, m2_b
    count_a, mean_a, m2_a = moments
    if count_b == 0:
        return moments
    count = count_a + count_b
    delta = mean_b - mean_a
    mean = mean_a + delta * count_b / count
    return count, mean, m2_a + m2_b + np.square(delta) * count_a * count_b / count
