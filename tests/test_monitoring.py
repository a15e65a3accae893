"""Drift signals and the population stability index."""

import numpy as np
import pandas as pd
import pytest

from multimodal_fusion.audio import DecodedSource, inspect_clip, problem_with
from multimodal_fusion.datasets import AudioClip
from multimodal_fusion.monitoring import SIGNALS, drift, profile, psi, signal_values
from multimodal_fusion.text import TokenVocabulary

RATE = 16000


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift():
    same = psi([0.25] * 4, [0.25] * 4)
    small = psi([0.25] * 4, [0.3, 0.25, 0.25, 0.2])
    large = psi([0.25] * 4, [0.7, 0.1, 0.1, 0.1])
    assert same == 0
    assert 0 < small < 0.1 < large
    assert np.isfinite(psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]))  # empty bins


def _values(rng, n, loudness=-20.0, oov_words=""):
    return {
        "modalities": ["text+audio"] * n,
        "text_length": list(rng.normal(40, 8, n)),
        "oov_share": list(rng.uniform(0, 0.2, n)),
        "clip_duration_s": list(rng.normal(3, 0.5, n)),
        "loudness_dbfs": list(rng.normal(loudness, 2, n)),
        "snr_db": list(rng.normal(20, 3, n)),
        "predicted_label": list(rng.choice(["a", "b", "c"], n)),
        "confidence": list(rng.uniform(0.6, 1, n)),
    }


def test_a_shifted_signal_is_flagged_and_the_others_are_not():
    rng = np.random.default_rng(0)
    reference = profile(_values(rng, 2000))
    same = drift(reference, _values(rng, 500), threshold=0.2)
    quieter = drift(reference, _values(rng, 500, loudness=-32.0), threshold=0.2)

    assert set(reference) == set(SIGNALS)
    assert not any(entry["flagged"] for entry in same.values())
    assert [n for n, e in quieter.items() if e["flagged"]] == ["loudness_dbfs"]
    assert quieter["loudness_dbfs"]["mean"] == pytest.approx(-32, abs=0.5)
    assert quieter["loudness_dbfs"]["reference_mean"] == pytest.approx(-20, abs=0.2)


def test_new_categories_and_missing_signals():
    rng = np.random.default_rng(1)
    reference = profile(_values(rng, 500))
    batch = _values(rng, 200)
    batch["modalities"] = ["text"] * 200  # the clips stopped arriving
    batch["clip_duration_s"] = []
    report = drift(reference, batch, threshold=0.2)

    assert report["modalities"]["flagged"]
    assert report["modalities"]["shares"] == {"text": 1.0}
    assert report["clip_duration_s"]["not_measured"]
    assert not report["clip_duration_s"]["flagged"]


def test_signal_values_measure_texts_clips_and_predictions():
    vocabulary = TokenVocabulary(min_count=1).fit(["my card is lost", "card late"])
    contacts = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "text": ["my card is gone", "", "late late"],
            "has_text": [True, False, True],
            "has_audio": [True, True, False],
        }
    )
    index = pd.DataFrame(
        {
            "id": ["a", "b", "z"],
            "duration_s": [1.0, 2.0, 9.0],
            "rms_dbfs": [-20.0, -25.0, 0.0],
            "snr_db": [30.0, 10.0, 0.0],
        }
    )
    predictions = pd.DataFrame(
        {"predicted": ["x", "y", "x"], "probability": [0.9, 0.5, 0.7]}
    )
    values = signal_values(contacts, index, vocabulary, predictions)

    assert values["modalities"] == ["text+audio", "audio", "text"]
    assert values["text_length"] == [15, 9]
    assert values["oov_share"] == [0.25, 0.0]  # "gone" is not in the vocabulary
    assert values["clip_duration_s"] == [1.0, 2.0]  # z is not in the batch
    assert values["confidence"] == [0.9, 0.5, 0.7]


def _speech_like(rng, snr_db, pauses=True):
    """Bursts of a tone with pauses, in white noise at ``snr_db``."""
    t = np.arange(2 * RATE) / RATE
    gate = (np.sin(2 * np.pi * 2 * t) > 0) if pauses else np.ones_like(t, bool)
    signal = np.sin(2 * np.pi * 220 * t) * gate
    noise = rng.standard_normal(t.size)
    noise *= np.sqrt(np.mean(signal[gate] ** 2) / 10 ** (snr_db / 10))
    return AudioClip((0.3 * (signal + noise)).astype(np.float32), RATE)


def test_the_snr_estimate_follows_the_noise_level():
    rng = np.random.default_rng(2)
    estimates = [
        inspect_clip(DecodedSource("c", _speech_like(rng, snr))).snr_db
        for snr in (30, 20, 10, 0)
    ]
    assert estimates == sorted(estimates, reverse=True)
    assert estimates[0] - estimates[-1] > 20
    silent_pauses = _speech_like(rng, 200)
    assert inspect_clip(DecodedSource("c", silent_pauses)).snr_db >= 90
    assert problem_with(silent_pauses) is None
