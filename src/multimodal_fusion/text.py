"""Text normalisation and masking of personal data (PII).

Every typed message goes through :func:`clean_text` before it reaches features,
models, reports or logs.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

EMAIL_TOKEN = "[EMAIL]"
CARD_TOKEN = "[CARD]"
IBAN_TOKEN = "[IBAN]"
PHONE_TOKEN = "[PHONE]"

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")
_CARD = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
_PHONE = re.compile(r"(?<![\w\[])\+?\(?\d[\d ().-]{5,}\d(?!\d)")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPACES = re.compile(r"\s+")


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum (payment cards)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _mask_card(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group())
    return CARD_TOKEN if luhn_valid(digits) else match.group()


def _mask_phone(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group())
    return PHONE_TOKEN if 7 <= len(digits) <= 15 else match.group()


def mask_pii(text: str) -> str:
    """Replaces emails, IBANs, Luhn-valid card numbers and phone numbers by tokens.

    Card numbers are masked before phone numbers, so a 16-digit card is never
    half-masked as a phone; digit runs that fail the Luhn check and have 7 to 15
    digits are treated as phone numbers.
    """
    text = _EMAIL.sub(EMAIL_TOKEN, text)
    text = _IBAN.sub(IBAN_TOKEN, text)
    text = _CARD.sub(_mask_card, text)
    return _PHONE.sub(_mask_phone, text)


def normalise_text(text: str) -> str:
    """Unicode NFKC, control characters removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def clean_text(text: str, *, lowercase: bool = True) -> str:
    """Normalises a message and masks its PII; tokens stay upper-case."""
    masked = mask_pii(normalise_text(text))
    if not lowercase:
        return masked
    tokens = (EMAIL_TOKEN, CARD_TOKEN, IBAN_TOKEN, PHONE_TOKEN)
    pieces = re.split(f"({'|'.join(re.escape(t) for t in tokens)})", masked)
    return "".join(p if p in tokens else p.lower() for p in pieces)


class TextFeaturizer:
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


class TokenVocabulary:
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
