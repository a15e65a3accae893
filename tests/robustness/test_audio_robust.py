import numpy as np
import pytest

from multimodal_fusion.datasets import AudioClip
from multimodal_fusion.robustness.audio_robust import (
    apply_gain,
    augment_clip,
    change_speed,
    time_shift,
)


def _tone(seconds=1.0, rate=8000):
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_noise_is_added_at_the_requested_snr(snr_db):
    clip = AudioClip(_tone(), 8000)
    noisy = augment_clip(clip, np.random.default_rng(0), {"snr_db": [snr_db, snr_db]})
    noise = noisy.waveform - clip.waveform
    measured = 10 * np.log10(np.mean(clip.waveform**2) / np.mean(noise**2))
    assert measured == pytest.approx(snr_db, abs=0.3)
    assert noisy.waveform.dtype == np.float32


def test_gain_scales_and_clips():
    wave = _tone()
    louder = apply_gain(wave, gain_db=6.0)
    assert np.max(np.abs(louder)) == pytest.approx(0.5 * 10 ** (6 / 20), rel=1e-3)
    assert np.max(np.abs(apply_gain(wave, gain_db=20.0))) == 1.0


def test_time_shift_delays_or_advances_without_cutting_the_utterance_away():
    wave = np.arange(1, 11, dtype=np.float32)
    assert time_shift(wave, shift=3).tolist() == [0, 0, 0, *range(1, 11)]
    assert time_shift(wave, shift=-3).tolist() == list(range(4, 11))
    assert time_shift(wave, shift=-30).tolist() == list(range(6, 11))  # half kept
    assert time_shift(wave, shift=0).tolist() == wave.tolist()


def test_speed_change_shortens_and_raises_pitch():
    rate = 8000
    faster = change_speed(_tone(rate=rate), factor=1.25)
    assert len(faster) == pytest.approx(rate / 1.25, abs=2)
    spectrum = np.abs(np.fft.rfft(faster))
    peak_hz = np.argmax(spectrum) * rate / len(faster)
    assert peak_hz == pytest.approx(440 * 1.25, rel=0.02)
    with pytest.raises(ValueError, match="positive"):
        change_speed(_tone(), factor=0)


def test_augment_clip_is_reproducible_and_skips_null_perturbations():
    clip = AudioClip(_tone(), 8000)
    params = {
        "snr_db": [5, 10],
        "gain_db": [-3, 3],
        "max_shift_s": 0.1,
        "speed": [0.9, 1.1],
    }
    first = augment_clip(clip, np.random.default_rng(1), params)
    second = augment_clip(clip, np.random.default_rng(1), params)
    np.testing.assert_array_equal(first.waveform, second.waveform)
    assert first.sample_rate == 8000
    assert 0.8 * 8000 < len(first.waveform) < 1.25 * 8000 + 800

    untouched = augment_clip(clip, np.random.default_rng(1), {"snr_db": None})
    np.testing.assert_array_equal(untouched.waveform, clip.waveform)
