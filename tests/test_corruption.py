import numpy as np
import pytest

from multimodal_fusion.corruption import (
    NOISE_KINDS,
    drop_words,
    make_noise,
    mix_at_snr,
    shuffle_words,
    typos,
)

TEXT = "please refund my broken kettle from last week thanks"


def test_rate_zero_changes_nothing_and_rate_one_changes_everything():
    rng = np.random.default_rng(0)
    for corrupt in (typos, drop_words, shuffle_words):
        assert corrupt(TEXT, rng, 0.0) == TEXT
    assert drop_words(TEXT, rng, 1.0) == ""
    shuffled = shuffle_words(TEXT, np.random.default_rng(1), 1.0)
    assert sorted(shuffled.split()) == sorted(TEXT.split()) and shuffled != TEXT


def test_word_omission_drops_about_the_rate():
    words = " ".join(f"w{i}" for i in range(2000))
    kept = drop_words(words, np.random.default_rng(2), 0.3).split()
    assert len(kept) == pytest.approx(1400, abs=60)
    assert kept == [w for w in words.split() if w in set(kept)]  # order kept


def test_typos_are_seeded_and_letter_level():
    first = typos(TEXT, np.random.default_rng(3), 0.2)
    assert first == typos(TEXT, np.random.default_rng(3), 0.2)
    assert first != TEXT
    assert abs(len(first) - len(TEXT)) < 15


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_noise_has_unit_rms(kind):
    noise = make_noise(kind, 16000, 16000, np.random.default_rng(4))
    assert noise.shape == (16000,)
    assert np.std(noise) == pytest.approx(1.0, rel=1e-6)


def test_unknown_noise_kind_is_named():
    with pytest.raises(ValueError, match="Unknown noise type 'rain'"):
        make_noise("rain", 100, 16000, np.random.default_rng(0))


@pytest.mark.parametrize("snr_db", [20.0, 0.0, -5.0])
def test_mix_at_snr_hits_the_requested_ratio(snr_db):
    t = np.arange(16000) / 16000
    speech = 0.3 * np.sin(2 * np.pi * 200 * t)
    noise = make_noise("white", len(speech), 16000, np.random.default_rng(5))
    mixed = mix_at_snr(speech, noise, snr_db)
    residual = mixed - speech
    measured = 10 * np.log10(np.mean(speech**2) / np.mean(residual**2))
    assert measured == pytest.approx(snr_db, abs=0.01)  # noise RMS is its std
