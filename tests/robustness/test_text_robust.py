import numpy as np

from multimodal_fusion.robustness.text_robust import add_typos, augment_text, drop_words

TEXT = "my card was stolen yesterday please block it right away"


def test_typos_grow_with_the_rate():
    rng = np.random.default_rng(0)

    def changed_share(rate):
        return np.mean(
            [add_typos(TEXT, rate=rate, rng=rng) != TEXT for _ in range(200)]
        )

    # 46 letters: at 1 % about 37 % of copies change, at 10 % nearly all do.
    assert 0.2 < changed_share(0.01) < 0.6
    assert changed_share(0.1) > 0.95
    assert add_typos(TEXT, rate=0.0, rng=rng) == TEXT


def test_typos_leave_non_letters_alone():
    assert add_typos("12 34 !!", rate=1.0, rng=np.random.default_rng(0)) == "12 34 !!"


def test_word_dropout_keeps_order_and_at_least_one_word():
    rng = np.random.default_rng(0)
    kept = drop_words(TEXT, rate=0.5, rng=rng).split()
    words = TEXT.split()
    assert 0 < len(kept) < len(words)
    positions = [words.index(w) for w in kept]
    assert positions == sorted(positions)
    assert len(drop_words(TEXT, rate=1.0, rng=rng).split()) == 1
    assert drop_words("single", rate=1.0, rng=rng) == "single"


def test_augment_text_is_reproducible_and_can_be_switched_off():
    params = {"typo_rate": 0.05, "word_dropout": 0.2}
    first = augment_text(TEXT, np.random.default_rng(3), params)
    assert first == augment_text(TEXT, np.random.default_rng(3), params)
    assert first != TEXT
    off = {"typo_rate": 0, "word_dropout": None}
    assert augment_text(TEXT, np.random.default_rng(3), off) == TEXT
