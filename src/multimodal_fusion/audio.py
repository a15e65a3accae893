"""Audio preprocessing: mono, validity checks, resampling, trimming, loudness
and length caps. Features live in :mod:`multimodal_fusion.audio_features`.

Waveforms are float32 arrays of shape ``(n_samples,)`` (mono) or
``(n_samples, n_channels)`` (soundfile's layout).
"""

from __future__ import annotations

import librosa
import numpy as np

from multimodal_fusion.datasets import AudioClip

SILENCE_PEAK = 1e-4


def to_mono(waveform: np.ndarray) -> np.ndarray:
    """Averages channels: ``(n, c)`` → ``(n,)``; mono passes through."""
    waveform = np.asarray(waveform, dtype=np.float32)
    return waveform.mean(axis=1, dtype=np.float32) if waveform.ndim == 2 else waveform


def problem_with(clip: AudioClip) -> str | None:
    """Why a decoded clip cannot be used, or None when it can."""
    waveform = np.asarray(clip.waveform)
    if waveform.size == 0:
        return "empty audio: the file holds no samples"
    if not np.all(np.isfinite(waveform)):
        return "non-finite samples (NaN or inf) in the waveform"
    if np.max(np.abs(waveform)) < SILENCE_PEAK:
        return "silent audio: peak below -80 dBFS"
    return None


def prepare_clip(
    clip: AudioClip,
    *,
    sample_rate: int,
    top_db: float,
    target_dbfs: float,
    max_seconds: float,
) -> tuple[AudioClip, bool]:
    """Mono, resampled, trimmed, loudness-normalised and length-capped clip.

    Args:
        clip: Decoded clip at any rate, mono or multichannel.
        sample_rate: Target rate in Hz; resampling only happens when it differs.
        top_db: Edges quieter than this many dB below the peak are trimmed.
        target_dbfs: RMS level to normalise to; the peak is then limited to 1.
        max_seconds: Longer clips are cut to this length.

    Returns:
        The prepared clip and whether it was cut to ``max_seconds``.
    """
    waveform = to_mono(clip.waveform)
    if clip.sample_rate != sample_rate:
        waveform = librosa.resample(
            waveform,
            orig_sr=clip.sample_rate,
            target_sr=sample_rate,
            res_type="soxr_hq",
        ).astype(np.float32)
    trimmed, _ = librosa.effects.trim(waveform, top_db=top_db)
    if trimmed.size:
        waveform = trimmed
    max_samples = int(max_seconds * sample_rate)
    truncated = waveform.size > max_samples
    waveform = waveform[:max_samples]
    rms = float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))
    gain = 10 ** (target_dbfs / 20) / max(rms, 1e-8)
    waveform = waveform * gain
    peak = float(np.max(np.abs(waveform)))
    if peak > 1.0:
        waveform = waveform / peak
    return AudioClip(waveform.astype(np.float32), sample_rate), truncated
