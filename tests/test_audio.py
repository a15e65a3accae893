import numpy as np
import pytest

from multimodal_fusion.audio import prepare_clip, problem_with, to_mono
from multimodal_fusion.datasets import AudioClip

PREP = {"sample_rate": 16000, "top_db": 30, "target_dbfs": -20.0, "max_seconds": 2.0}


def _tone(sample_rate, seconds, amplitude=0.5):
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


def test_to_mono_averages_channels():
    stereo = np.stack([np.ones(4), np.zeros(4)], axis=1).astype(np.float32)
    assert to_mono(stereo).tolist() == [0.5] * 4


def test_prepare_clip_resamples_trims_and_normalises():
    tone = _tone(22050, 1.0)
    padded = np.concatenate(
        [np.zeros(22050, np.float32), tone, np.zeros(11025, np.float32)]
    )
    clip, truncated = prepare_clip(AudioClip(padded, 22050), **PREP)
    assert clip.sample_rate == 16000
    assert not truncated
    assert clip.duration == pytest.approx(1.0, abs=0.15)  # 1.5 s of silence trimmed
    rms_db = 20 * np.log10(np.sqrt(np.mean(clip.waveform**2)))
    assert rms_db == pytest.approx(-20.0, abs=0.5)


def test_prepare_clip_caps_length_and_reports_it():
    clip, truncated = prepare_clip(AudioClip(_tone(16000, 3.0), 16000), **PREP)
    assert truncated
    assert len(clip.waveform) == 32000


def test_prepare_clip_limits_the_peak():
    spiky = np.full(16000, 0.001, np.float32)
    spiky[100] = 1.0
    clip, _ = prepare_clip(AudioClip(spiky, 16000), **{**PREP, "top_db": 200})
    assert np.max(np.abs(clip.waveform)) <= 1.0


@pytest.mark.parametrize(
    ("waveform", "reason"),
    [
        (np.zeros(0, np.float32), "empty"),
        (np.array([0.1, np.nan], np.float32), "non-finite"),
        (np.zeros(100, np.float32), "silent"),
    ],
)
def test_problem_with_names_the_defect(waveform, reason):
    assert reason in problem_with(AudioClip(waveform, 16000))


def test_problem_with_accepts_speechlike_audio():
    assert problem_with(AudioClip(_tone(16000, 0.1), 16000)) is None
