"""Message augmentation for training: word dropout, then typos, built on the
corruptions of :mod:`multimodal_fusion.corruption`. Randomness comes from the
``numpy.random.Generator`` it is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from multimodal_fusion.corruption import drop_words, typos


def augment_text(text: str, rng: np.random.Generator, params: dict[str, Any]) -> str:
    """A randomly perturbed copy of ``text``: word dropout (the message is kept
    whole if every word would go), then typos; each is skipped when its
    parameter (``word_dropout``, ``typo_rate``) is null or 0."""
    if params.get("word_dropout"):
        text = drop_words(text, rng, params["word_dropout"]) or text
    if params.get("typo_rate"):
        text = typos(text, rng, params["typo_rate"])
    return text
