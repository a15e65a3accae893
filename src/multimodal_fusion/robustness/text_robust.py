"""Message perturbations: typos and word dropout. Every function is pure and
takes its randomness from the ``numpy.random.Generator`` it is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_TYPO_KINDS = ("swap", "drop", "double", "replace")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def add_typos(text: str, *, rate: float, rng: np.random.Generator) -> str:
    """Each letter, with probability ``rate``, is swapped with the next one,
    dropped, doubled or replaced by a random letter."""
    chars, out, i = list(text), [], 0
    while i < len(chars):
        char = chars[i]
        if not char.isalpha() or rng.random() >= rate:
            out.append(char)
            i += 1
            continue
        kind = _TYPO_KINDS[rng.integers(len(_TYPO_KINDS))]
        if kind == "swap" and i + 1 < len(chars):
            out += [chars[i + 1], char]
            i += 2
            continue
        if kind == "double":
            out += [char, char]
        elif kind == "replace":
            out.append(_LETTERS[rng.integers(len(_LETTERS))])
        elif kind == "swap":  # last letter: nothing to swap with
            out.append(char)
        i += 1
    return "".join(out)


def drop_words(text: str, *, rate: float, rng: np.random.Generator) -> str:
    """Drops each word with probability ``rate``; at least one word stays."""
    words = text.split()
    if len(words) < 2:
        return text
    kept = [w for w in words if rng.random() >= rate]
    return " ".join(kept or [words[rng.integers(len(words))]])


def augment_text(text: str, rng: np.random.Generator, params: dict[str, Any]) -> str:
    """A randomly perturbed copy of ``text``: word dropout, then typos; each is
    skipped when its parameter (``word_dropout``, ``typo_rate``) is null or 0."""
    if params.get("word_dropout"):
        text = drop_words(text, rate=params["word_dropout"], rng=rng)
    if params.get("typo_rate"):
        text = add_typos(text, rate=params["typo_rate"], rng=rng)
    return text
