import numpy as np
import pytest

from multimodal_fusion.text import TextFeaturizer, clean_text, luhn_valid, mask_pii


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("write to Jane.Doe+bank@mail.example.co.uk now", "write to [EMAIL] now"),
        ("card 4111 1111 1111 1111 lost", "card [CARD] lost"),
        ("card 4111-1111-1111-1111 lost", "card [CARD] lost"),
        ("call +44 20 7946 0958 today", "call [PHONE] today"),
        ("call (555) 123-4567", "call [PHONE]"),
        ("iban GB82 WEST 1234 5698 7654 32 ok", "iban [IBAN] ok"),
        ("iban DE89370400440532013000", "iban [IBAN]"),
    ],
)
def test_mask_pii_replaces_identifiers(raw, masked):
    assert mask_pii(raw) == masked


@pytest.mark.parametrize("text", ["order 12345 arrived", "on 12/03/2024 at 10:30"])
def test_mask_pii_keeps_short_numbers_and_dates(text):
    assert mask_pii(text) == text


def test_luhn():
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")


def test_clean_text_normalises_and_keeps_tokens_uppercase():
    raw = "  Hi\tTHERE\x00 ﬁne, mail ME@x.com "
    assert clean_text(raw) == "hi there fine, mail [EMAIL]"
    assert clean_text(raw, lowercase=False) == "Hi THERE fine, mail [EMAIL]"


def test_featurizer_learns_from_text_and_zeroes_empty_rows():
    featurizer = TextFeaturizer(min_df=1).fit(["lost card", "card arrived", ""])
    matrix = featurizer.transform(["lost card", ""])
    assert matrix.shape == (2, featurizer.n_features_)
    assert matrix.dtype == np.float32
    assert matrix[0].getnnz() > 0 and matrix[1].getnnz() == 0


def test_featurizer_on_no_text_gives_zero_features():
    featurizer = TextFeaturizer().fit(["", ""])
    assert featurizer.n_features_ == 0
    assert featurizer.transform(["anything"]).shape == (1, 0)
