"""Tests of the eSpeak NG wrapper: voices, audible output, reproducible batches."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from multimodal_fusion import speech

pytest.importorskip("espeakng_loader")

REQUESTS = [
    {"text": "I lost my card yesterday.", "voice": "en-us", "variant": "f2", "seed": 1},
    {"text": "Where is my parcel?", "voice": "en-gb-scotland", "variant": "m3",
     "rate": 190, "pitch": 30, "seed": 2},
    {"text": "Please close my account.", "voice": "en-gb-x-rp", "seed": 3},
]  # fmt: skip


def test_voices_and_variants_are_listed():
    voices = speech.english_voices()
    assert {"en-us", "en-gb-scotland", "en-gb-x-rp", "en-029"} <= set(voices)
    assert "en-shaw" not in voices
    assert {"m1", "m7", "f1", "f4"} <= set(speech.voice_variants())


def test_synthesize_returns_audible_float32_speech():
    waveform = speech.synthesize("Hello, I need help with my account.", voice="en-us")
    assert speech.SAMPLE_RATE == 22_050
    assert waveform.dtype == np.float32
    assert waveform.ndim == 1
    assert 0.8 < len(waveform) / speech.SAMPLE_RATE < 5
    assert np.sqrt(np.mean(waveform**2)) > 0.01
    assert np.max(np.abs(waveform)) <= 1.0


def test_faster_rate_gives_shorter_speech():
    text = "My new card still has not arrived."
    slow = speech.synthesize(text, rate=110)
    fast = speech.synthesize(text, rate=300)
    assert len(fast) < 0.7 * len(slow)


def test_batches_are_reproducible():
    first = speech.synthesize_batch(REQUESTS)
    speech.synthesize("Something else, to change this process's state.")
    second = speech.synthesize_batch(REQUESTS)
    assert len(first) == len(REQUESTS)
    for a, b in zip(first, second, strict=True):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    assert len({len(waveform) for waveform in first}) == len(REQUESTS)
    assert speech.synthesize_batch([]) == []


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="Unknown eSpeak NG voice"):
        speech.synthesize("hello", voice="xx-nowhere")
    with pytest.raises(ValueError, match="rate"):
        speech.synthesize("hello", rate=20)
    with pytest.raises(ValueError, match="pitch"):
        speech.synthesize("hello", pitch=120)


def test_missing_loader_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[demo\]"'):
        speech.english_voices()
    with pytest.raises(ImportError, match="espeakng-loader"):
        speech.synthesize_batch(REQUESTS)
