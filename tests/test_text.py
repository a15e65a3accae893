import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal_fusion.text import (
    IBAN_LENGTHS,
    TextFeaturizer,
    clean_text,
    luhn_valid,
    mask_pii,
    normalise_text,
)


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


# --- more identifiers and the normalisation ------------------------------------


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("my iban is gb82 west 1234 5698 7654 32", "my iban is [IBAN]"),
        ("FR14 2004 1010 0505 0001 3M02 606 thanks", "[IBAN] thanks"),
        ("card 4111.1111.1111.1112 (typo)", "card [NUMBER] (typo)"),
        ("ref x07870168125", "ref x[PHONE]"),
        ("full-width ４１１１ １１１１ １１１１ １１１１", "full-width [CARD]"),
        ("hidden 4111\u200b1111\u200b1111\u200b1111", "hidden [CARD]"),
        ("on 12.03.2024 or 2024-03-12", "on 12.03.2024 or 2024-03-12"),
    ],
)
def test_clean_text_masks_disguised_identifiers(raw, masked):
    assert clean_text(raw, lowercase=False) == masked


@pytest.mark.parametrize("text", ["de44 hello world 1234", "is20 this that", "GB82"])
def test_iban_shaped_words_are_kept(text):
    assert mask_pii(text) == text


def test_normalise_removes_invisible_and_control_characters():
    assert normalise_text("a\u202eb\u00adc\ufeff\td\r\ne\x00f") == "abc d e f"


# --- property tests (hypothesis) ------------------------------------------------

PLAIN = st.text(
    alphabet=st.characters(
        categories=("L", "Zs", "P"),
        exclude_characters="@[]+()-./#",
        max_codepoint=0x2FF,
    ),
    max_size=30,
)


def _luhn_complete(body: str) -> str:
    for digit in "0123456789":
        if luhn_valid(body + digit):
            return body + digit
    raise AssertionError("unreachable")


cards = st.builds(
    _luhn_complete, st.text(alphabet="0123456789", min_size=15, max_size=15)
).map(lambda n: st.sampled_from([n, " ".join(n[i : i + 4] for i in range(0, 16, 4))]))
emails = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"[a-z][a-z0-9._+-]{0,12}[a-z0-9]", fullmatch=True),
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True),
    st.sampled_from(["com", "co.uk", "org", "de"]),
)
phones = st.builds(
    lambda d, fmt: fmt.format(d=d),
    st.text(alphabet="0123456789", min_size=10, max_size=10),
    st.sampled_from(
        [
            "+44 7{d[0]}{d[1]}{d[2]} {d[3]}{d[4]}{d[5]}{d[6]}{d[7]}{d[8]}",
            "({d[0]}{d[1]}{d[2]}) {d[3]}{d[4]}{d[5]}-{d[6]}{d[7]}{d[8]}{d[9]}",
            "{d}",
        ]
    ),
)


def _iban(country: str, digits: str) -> str:
    body = (digits * 4)[: IBAN_LENGTHS[country] - 4]
    return f"{country}{digits[:2]}{body}"


ibans = st.builds(
    _iban,
    st.sampled_from(sorted(IBAN_LENGTHS)),
    st.text(alphabet="0123456789", min_size=10, max_size=10),
)


@st.composite
def messages_with_pii(draw):
    kind, strategy = draw(
        st.sampled_from(
            [
                ("[CARD]", cards.flatmap(lambda s: s)),
                ("[EMAIL]", emails),
                ("[PHONE]", phones),
                ("[IBAN]", ibans),
            ]
        )
    )
    pii = draw(strategy)
    if kind == "[IBAN]" and draw(st.booleans()):
        pii = pii.lower()
    before, after = draw(PLAIN), draw(PLAIN)
    return f"{before} {pii} {after}", pii, kind


@settings(max_examples=300, deadline=None)
@given(messages_with_pii())
def test_planted_identifiers_never_survive_cleaning(message):
    text, pii, token = message
    cleaned = clean_text(text)
    assert token in cleaned
    assert pii.lower() not in cleaned.lower()
    digits = "".join(c for c in pii if c.isdigit())
    assert len(digits) < 7 or digits not in "".join(c for c in cleaned if c.isdigit())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_normalise_is_idempotent_and_leaves_no_invisible_characters(text):
    once = normalise_text(text)
    assert normalise_text(once) == once
    assert once == once.strip() and "  " not in once
    assert not any(unicodedata.category(c) in {"Cc", "Cf"} for c in once)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_masking_and_cleaning_are_total_and_idempotent(text):
    masked = mask_pii(text)
    assert mask_pii(masked) == masked
    cleaned = clean_text(text)
    assert clean_text(cleaned) == cleaned
    assert clean_text(text, lowercase=False).lower() == cleaned.lower()


@settings(max_examples=200, deadline=None)
@given(PLAIN)
def test_text_without_digits_or_at_signs_is_not_masked(text):
    assert mask_pii(text) == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789", min_size=13, max_size=19))
def test_cards_are_told_from_other_numbers_by_the_luhn_check(digits):
    expected = (
        "[CARD]"
        if luhn_valid(digits)
        else "[PHONE]"
        if len(digits) <= 15
        else "[NUMBER]"
    )
    assert mask_pii(f"no {digits} ok") == f"no {expected} ok"
