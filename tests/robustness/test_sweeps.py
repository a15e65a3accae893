import numpy as np
import pytest

from multimodal_fusion.datasets import AudioClip
from multimodal_fusion.robustness.sweeps import (
    effective_robustness,
    level_key,
    level_label,
    noisy_clip,
    relative_robustness,
    sweep_levels,
)

PARAMS = {
    "noise": ["white_noise"],
    "snr_db": [10, 0],
    "text": ["typos"],
    "text_rates": [0.2],
    "missing": ["audio_missing"],
    "missing_rates": [0.5, 1.0],
}


def test_levels_start_clean_and_share_the_clean_key():
    levels = sweep_levels(PARAMS)
    assert levels == {
        "white_noise": [None, 10, 0],
        "typos": [0.0, 0.2],
        "audio_missing": [0.0, 0.5, 1.0],
    }
    keys = {name: [level_key(name, lv) for lv in lvs] for name, lvs in levels.items()}
    assert keys == {
        "white_noise": ["clean", "white_noise@10", "white_noise@0"],
        "typos": ["clean", "typos@0.2"],
        "audio_missing": ["clean", "audio_missing@0.5", "audio_missing@1"],
    }
    # 0 dB is a noise level, not the clean input.
    assert level_key("babble_noise", 0) == "babble_noise@0"
    assert [level_label("white_noise", lv) for lv in levels["white_noise"]] == [
        "clean",
        "10 dB",
        "0 dB",
    ]
    assert level_label("typos", 0.2) == "20 %"


def test_unknown_imperfections_are_refused_by_name():
    with pytest.raises(ValueError, match=r"\['pink_noise'\]"):
        sweep_levels({**PARAMS, "noise": ["pink_noise"]})


def test_relative_robustness_is_the_area_under_the_curve():
    assert relative_robustness([0.8, 0.8, 0.8]) == pytest.approx(0.8)
    assert relative_robustness([1.0, 0.5, 0.0]) == pytest.approx(0.5)
    # Uneven drops: trapezoids over evenly spread levels.
    assert relative_robustness([1.0, 1.0, 0.0]) == pytest.approx(0.75)


def test_effective_robustness_equalises_the_clean_scores():
    baseline = [0.9, 0.6, 0.3]
    assert effective_robustness(baseline, baseline) == pytest.approx(0.0)
    # Same drop from a lower start: equally robust.
    assert effective_robustness([0.7, 0.4, 0.1], baseline) == pytest.approx(0.0)
    # Flat curve: holds up better than the baseline by its mean drop.
    flat = effective_robustness([0.7, 0.7, 0.7], baseline)
    assert flat == pytest.approx(relative_robustness([0.0, 0.3, 0.6]))
    assert effective_robustness([0.9, 0.3, 0.0], baseline) < 0


@pytest.mark.parametrize("kind", ["white", "babble"])
@pytest.mark.parametrize("snr_db", [20.0, 0.0, -5.0])
def test_noise_is_mixed_at_the_requested_snr(kind, snr_db):
    rate = 16000
    t = np.arange(rate) / rate
    clip = AudioClip((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
    noisy = noisy_clip(clip, kind, snr_db, np.random.default_rng(0))
    noise = noisy.waveform - clip.waveform
    measured = 10 * np.log10(np.mean(clip.waveform**2) / np.mean(noise**2))
    assert measured == pytest.approx(snr_db, abs=0.05)
    assert noisy.waveform.dtype == np.float32 and noisy.sample_rate == rate
    again = noisy_clip(clip, kind, snr_db, np.random.default_rng(0))
    np.testing.assert_array_equal(noisy.waveform, again.waveform)
