import numpy as np

from multimodal_fusion.robustness.text_robust import augment_text

TEXT = "my card was stolen yesterday please block it right away"


def test_augment_text_is_reproducible_and_can_be_switched_off():
    params = {"typo_rate": 0.05, "word_dropout": 0.2}
    first = augment_text(TEXT, np.random.default_rng(3), params)
    assert first == augment_text(TEXT, np.random.default_rng(3), params)
    assert first != TEXT
    off = {"typo_rate": 0, "word_dropout": None}
    assert augment_text(TEXT, np.random.default_rng(3), off) == TEXT


def test_word_dropout_never_empties_a_message():
    rng = np.random.default_rng(0)
    assert augment_text(TEXT, rng, {"word_dropout": 1.0}) == TEXT
    kept = augment_text(TEXT, rng, {"word_dropout": 0.5}).split()
    assert 0 < len(kept) < len(TEXT.split())
