"""Text normalisation and masking of personal data (PII).

Every typed message goes through :func:`clean_text` before it reaches features,
models, reports or logs. Masking is deliberately greedy: a long digit run that is
not a card is still masked (as a phone number or a number), because a leaked
identifier costs more than a lost order number.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from multimodal_fusion.persistence import Stateful

EMAIL_TOKEN = "[EMAIL]"
CARD_TOKEN = "[CARD]"
IBAN_TOKEN = "[IBAN]"
PHONE_TOKEN = "[PHONE]"
NUMBER_TOKEN = "[NUMBER]"
PII_TOKENS = (EMAIL_TOKEN, CARD_TOKEN, IBAN_TOKEN, PHONE_TOKEN, NUMBER_TOKEN)

# IBAN length per country (SWIFT IBAN registry): a candidate is masked when its
# country code is known and it has exactly that many characters.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}  # fmt: skip

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Two letters, two check digits, then 11-30 letters or digits, optionally in groups.
_IBAN = re.compile(r"(?<![^\W_])([A-Za-z]{2})(\d{2})((?: ?[A-Za-z0-9]){11,30})")
# Digits with at most two separators between them: phone, card and account numbers.
_DIGITS = re.compile(r"\+?\(?(?<!\d)\d(?:[ .()\-]{0,2}\d)*")
_DATE = re.compile(r"\d{1,2}([./-])\d{1,2}\1\d{2,4}|\d{4}([./-])\d{1,2}\2\d{1,2}")
_TOKENS = re.compile("(" + "|".join(re.escape(t) for t in PII_TOKENS) + ")")
_SPACES = re.compile(r"\s+")
# Control characters become spaces; invisible format characters (zero-width
# spaces, BOMs, bidi overrides, soft hyphens) are removed, so that they can
# neither split a word nor hide an identifier from the masking.
_INVISIBLE = {
    code: " " if unicodedata.category(chr(code)) == "Cc" else None
    for code in range(sys.maxunicode + 1)
    if unicodedata.category(chr(code)) in {"Cc", "Cf"}
}


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum (payment cards)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _iban_end(match: re.Match) -> int | None:
    """Where the IBAN that ``match`` starts ends, when it has its country's exact
    length and is not the start of a longer word."""
    needed = IBAN_LENGTHS.get(match.group(1).upper(), 0) - 4
    rest, seen = match.group(3), 0
    for end, char in enumerate(rest, start=1):
        seen += char != " "
        if seen == needed:
            after = rest[end : end + 1] or match.string[match.end() : match.end() + 1]
            glued = after.isalnum()
            groups = rest[:end].split(" ")
            grouped = len(groups) == 1 or (
                groups[0] == ""
                and all(len(g) == 4 for g in groups[1:-1])
                and 1 <= len(groups[-1]) <= 4
            )
            return match.start(3) + end if grouped and not glued else None
    return None


def _mask_ibans(text: str) -> str:
    pieces, position = [], 0
    match = _IBAN.search(text)
    while match:
        end = _iban_end(match)
        if end is None:
            match = _IBAN.search(text, match.start() + 1)
            continue
        pieces += [text[position : match.start()], IBAN_TOKEN]
        position = end
        match = _IBAN.search(text, end)
    return "".join([*pieces, text[position:]])


def _mask_digits(match: re.Match) -> str:
    """Cards (13-19 digits, Luhn-valid), phones (7-15 digits), long numbers."""
    run = match.group()
    if _DATE.fullmatch(run.strip("+(")):
        return run
    digits = re.sub(r"\D", "", run)
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        return CARD_TOKEN
    if 7 <= len(digits) <= 15:
        return PHONE_TOKEN
    if len(digits) > 15:
        return NUMBER_TOKEN
    return run


def mask_pii(text: str) -> str:
    """Replaces personal identifiers by tokens.

    Emails become ``[EMAIL]``; IBANs (known country code, exact length, any case,
    grouped or not) ``[IBAN]``; digit runs with at most two separators between
    digits (spaces, dots, dashes, brackets) ``[CARD]`` when they have 13-19 digits
    and pass the Luhn check, else ``[PHONE]`` with 7-15 digits and ``[NUMBER]``
    with more. Dates (``12.03.2024``, ``2024-03-12``) and numbers of up to 6
    digits are kept.
    """
    text = _EMAIL.sub(EMAIL_TOKEN, text)
    text = _mask_ibans(text)
    return _DIGITS.sub(_mask_digits, text)


def normalise_text(text: str) -> str:
    """Control characters to spaces, invisible format characters removed,
    Unicode NFKC (full-width digits become ASCII), whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text.translate(_INVISIBLE))
    return _SPACES.sub(" ", text.translate(_INVISIBLE)).strip()


def clean_text(text: str, *, lowercase: bool = True) -> str:
    """Normalises a message and masks its PII; tokens stay upper-case."""
    masked = mask_pii(normalise_text(text))
    if not lowercase:
        return masked
    pieces = _TOKENS.split(masked)
    return "".join(p if p in PII_TOKENS else p.lower() for p in pieces)


class TextFeaturizer(Stateful):
    """TF-IDF over word n-grams and character n-grams (robust to typos).

    Follows scikit-learn's estimator conventions: ``__init__`` stores
    hyperparameters, ``fit`` returns ``self``, learned attributes end in ``_``.
    Fitting on no text at all (an audio-only dataset) gives zero features.

    Args:
        word_ngrams: (min, max) word n-gram sizes.
        char_ngrams: (min, max) character n-gram sizes inside word boundaries.
        max_features: Vocabulary cap per analyser.
        min_df: Minimum document frequency of a term.
    """

    def __init__(
        self,
        *,
        word_ngrams: tuple[int, int] = (1, 2),
        char_ngrams: tuple[int, int] = (2, 5),
        max_features: int = 20000,
        min_df: int = 2,
    ) -> None:
        self.word_ngrams = word_ngrams
        self.char_ngrams = char_ngrams
        self.max_features = max_features
        self.min_df = min_df

    def fit(self, texts) -> TextFeaturizer:
        """Learns vocabularies and idf weights from the non-empty texts."""
        texts = [t for t in texts if t]
        self.vectorizers_ = []
        if texts:
            common = {
                "min_df": min(self.min_df, len(texts)),
                "sublinear_tf": True,
                "max_features": self.max_features,
                "dtype": np.float32,
            }
            self.vectorizers_ = [
                TfidfVectorizer(ngram_range=tuple(self.word_ngrams), **common),
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=tuple(self.char_ngrams), **common
                ),
            ]
            for vectorizer in self.vectorizers_:
                vectorizer.fit(texts)
        self.n_features_ = sum(len(v.vocabulary_) for v in self.vectorizers_)
        return self

    def get_state(self) -> dict[str, Any]:
        """As :meth:`Stateful.get_state`; each TF-IDF vectorizer as its
        parameters, vocabulary and idf weights."""
        state = super().get_state()
        state["fitted"]["vectorizers_"] = [
            {
                "params": {
                    k: v
                    for k, v in vectorizer.get_params().items()
                    if k not in ("dtype", "vocabulary")
                },
                "vocabulary": {t: int(i) for t, i in vectorizer.vocabulary_.items()},
                "idf": vectorizer.idf_,
            }
            for vectorizer in self.vectorizers_
        ]
        return state

    @classmethod
    def rebuild(cls, state: dict[str, Any]) -> TextFeaturizer:
        """The featurizer :meth:`get_state` described: vectorizers with their
        fixed vocabulary and idf weights, transforming exactly as fitted."""
        fitted = dict(state["fitted"])
        vectorizers = []
        for stored in fitted.pop("vectorizers_"):
            params = dict(stored["params"])
            params["ngram_range"] = tuple(params["ngram_range"])
            vectorizer = TfidfVectorizer(
                **params, dtype=np.float32, vocabulary=stored["vocabulary"]
            )
            vectorizer.idf_ = stored["idf"]
            vectorizers.append(vectorizer)
        featurizer = super().rebuild({**state, "fitted": fitted})
        featurizer.vectorizers_ = vectorizers
        return featurizer

    def transform(self, texts):
        """Sparse float32 matrix ``(n_texts, n_features_)``; empty text → zero row."""
        texts = list(texts)
        if not self.vectorizers_:
            return sparse.csr_matrix((len(texts), 0), dtype=np.float32)
        blocks = [v.transform(texts) for v in self.vectorizers_]
        return (sparse.hstack(blocks, format="csr") / np.sqrt(len(blocks))).astype(
            np.float32
        )


_TOKEN = re.compile(r"\[[A-Z]+\]|[^\W_]+(?:'[^\W_]+)?")


def tokenize(text: str) -> list[str]:
    """Words (letters and digits, with inner apostrophes) and PII mask tokens."""
    return _TOKEN.findall(text)


class TokenVocabulary(Stateful):
    """Word vocabulary and padded token-id sequences, for sequence models.

    Follows scikit-learn's estimator conventions. Id 0 is padding and id 1 stands
    for words outside the vocabulary; known words get ids from 2 by decreasing
    training frequency (ties alphabetical).

    Args:
        min_count: Minimum number of training texts a word must appear in.
        max_words: Vocabulary cap (most frequent words kept).
        max_length: Sequences are cut to this many tokens.
    """

    PAD, OOV = 0, 1

    def __init__(
        self, *, min_count: int = 2, max_words: int = 5000, max_length: int = 48
    ) -> None:
        self.min_count = min_count
        self.max_words = max_words
        self.max_length = max_length

    def fit(self, texts) -> TokenVocabulary:
        """Learns the vocabulary and the sequence length from the training texts."""
        documents = [tokenize(t) for t in texts if t]
        counts: dict[str, int] = {}
        for words in documents:
            for word in set(words):
                counts[word] = counts.get(word, 0) + 1
        kept = sorted(
            (w for w, c in counts.items() if c >= min(self.min_count, len(documents))),
            key=lambda w: (-counts[w], w),
        )[: self.max_words]
        self.vocabulary_ = {word: i + 2 for i, word in enumerate(kept)}
        longest = max((len(words) for words in documents), default=0)
        self.length_ = min(self.max_length, longest)
        return self

    def transform(self, texts) -> np.ndarray:
        """Token ids ``(n_texts, length_)``, int32, zero-padded at the end."""
        texts = list(texts)
        ids = np.zeros((len(texts), self.length_), np.int32)
        for row, text in enumerate(texts):
            words = tokenize(text)[: self.length_]
            ids[row, : len(words)] = [self.vocabulary_.get(w, self.OOV) for w in words]
        return ids
