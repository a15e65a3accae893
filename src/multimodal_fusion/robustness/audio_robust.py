"""Waveform augmentation for training: gain, time shift and speed, plus white
noise at a random SNR from :mod:`multimodal_fusion.corruption`. Waveforms are
float32 mono arrays ``(n_samples,)``; every function is pure and takes its
randomness from the ``numpy.random.Generator`` it is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.signal import resample_poly

from multimodal_fusion.corruption import make_noise, mix_at_snr
from multimodal_fusion.datasets import AudioClip


def apply_gain(waveform: np.ndarray, *, gain_db: float) -> np.ndarray:
    """Scales by ``gain_db`` dB, clipping to [-1, 1] like a saturated recorder."""
    return np.clip(waveform * 10 ** (gain_db / 20), -1.0, 1.0).astype(np.float32)


def time_shift(waveform: np.ndarray, *, shift: int) -> np.ndarray:
    """Delays the signal by ``shift`` samples of leading silence (``shift`` > 0)
    or advances it by cutting its start (``shift`` < 0, at most half the clip,
    so that a short utterance is not cut away)."""
    if shift >= 0:
        return np.concatenate([np.zeros(shift, np.float32), waveform])
    return waveform[min(-shift, len(waveform) // 2) :].astype(np.float32)


def change_speed(waveform: np.ndarray, *, factor: float) -> np.ndarray:
    """Plays the clip ``factor`` times faster (tempo and pitch, like a tape):
    resampling by the rational approximation of ``1 / factor``."""
    if factor <= 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    up, down = 100, int(round(100 * factor))
    if up == down:
        return waveform.astype(np.float32)
    return resample_poly(waveform, up, down).astype(np.float32)


def augment_clip(
    clip: AudioClip, rng: np.random.Generator, params: dict[str, Any]
) -> AudioClip:
    """A randomly perturbed copy of ``clip``; each perturbation is skipped when
    its parameter is null.

    Args:
        clip: Mono clip.
        rng: Source of randomness.
        params: ``snr_db`` ([low, high] dB of added white noise), ``gain_db``
            ([low, high]), ``max_shift_s`` (largest shift either way, seconds),
            ``speed`` ([low, high] factor).

    Returns:
        The perturbed clip, at the same sample rate.
    """
    waveform = np.asarray(clip.waveform, np.float32)
    if params.get("speed"):
        waveform = change_speed(waveform, factor=rng.uniform(*params["speed"]))
    if params.get("max_shift_s"):
        limit = int(params["max_shift_s"] * clip.sample_rate)
        waveform = time_shift(waveform, shift=int(rng.integers(-limit, limit + 1)))
    if params.get("gain_db"):
        waveform = apply_gain(waveform, gain_db=rng.uniform(*params["gain_db"]))
    if params.get("snr_db"):
        noise = make_noise("white", len(waveform), clip.sample_rate, rng)
        snr_db = rng.uniform(*params["snr_db"])
        waveform = mix_at_snr(waveform, noise, snr_db).astype(np.float32)
    return AudioClip(waveform, clip.sample_rate)
