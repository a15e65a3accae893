"""Robustness sweeps (MultiBench, Liang et al. 2021): the imperfections applied to
the test split, their levels, and the robustness figures of a score curve.

An imperfection has levels from none to the strongest; its curve is the test
macro-F1 at each level. Audio noise is mixed into the prepared clips at a given
SNR, text corruptions act on the cleaned messages at a given rate, and a missing
modality is blanked in a given share of the test rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from multimodal_fusion.corruption import (
    drop_words,
    make_noise,
    mix_at_snr,
    shuffle_words,
    typos,
)
from multimodal_fusion.datasets import AudioClip

TEXT_CORRUPTIONS: dict[str, Callable[[str, np.random.Generator, float], str]] = {
    "typos": typos,
    "word_omission": drop_words,
    "word_shuffle": shuffle_words,
}
NOISES = {"white_noise": "white", "babble_noise": "babble"}
MISSING = {"text_missing": "text", "audio_missing": "audio"}
CLEAN = "clean"
# The modality each imperfection makes worse.
PERTURBED_MODALITY = {
    **dict.fromkeys(NOISES, "audio"),
    **dict.fromkeys(TEXT_CORRUPTIONS, "text"),
    **MISSING,
}
LEVEL_TITLES = {
    **dict.fromkeys(NOISES, "signal-to-noise ratio"),
    "typos": "share of letters mistyped",
    "word_omission": "share of words omitted",
    "word_shuffle": "share of words moved",
    **dict.fromkeys(MISSING, "share of test rows with the modality blanked"),
}


def sweep_levels(params: dict[str, Any]) -> dict[str, list]:
    """Every imperfection's levels, the clean level first.

    Noise levels are SNRs in dB (``None`` = no noise); text levels are rates of
    corrupted letters or words; missing-modality levels are shares of test rows.
    """
    levels: dict[str, list] = {}
    for name in params["noise"]:
        levels[name] = [None, *params["snr_db"]]
    for name in params["text"]:
        levels[name] = [0.0, *params["text_rates"]]
    for name in params["missing"]:
        levels[name] = [0.0, *params["missing_rates"]]
    unknown = set(levels) - set(NOISES) - set(TEXT_CORRUPTIONS) - set(MISSING)
    if unknown:
        raise ValueError(
            f"Unknown imperfections {sorted(unknown)} in parameters robustness; "
            f"known: noise {sorted(NOISES)}, text {sorted(TEXT_CORRUPTIONS)}, "
            f"missing {sorted(MISSING)}."
        )
    return levels


def level_key(imperfection: str, level: float | None) -> str:
    """The key of one level's inputs: ``clean`` for no imperfection."""
    if level is None or (level == 0 and imperfection not in NOISES):
        return CLEAN
    return f"{imperfection}@{level:g}"


def level_label(imperfection: str, level: float | None) -> str:
    """A level as shown on a plot axis: ``clean``, ``10 dB``, ``20 %``."""
    if level is None:
        return "clean"
    if imperfection in NOISES:
        return f"{level:g} dB"
    return f"{100 * level:g} %"


def noisy_clip(
    clip: AudioClip, kind: str, snr_db: float, rng: np.random.Generator
) -> AudioClip:
    """``clip`` with ``kind`` noise (white, babble, ...) at ``snr_db`` below it."""
    waveform = np.asarray(clip.waveform, np.float32)
    noise = make_noise(kind, len(waveform), clip.sample_rate, rng)
    return AudioClip(
        mix_at_snr(waveform, noise, snr_db).astype(np.float32), clip.sample_rate
    )


def relative_robustness(scores: list[float]) -> float:
    """Area under the score curve with its levels spread evenly over [0, 1]
    (trapezoids): the mean score across imperfection, in the score's units."""
    scores = np.asarray(scores, float)
    if len(scores) < 2:
        return float(scores[0]) if len(scores) else float("nan")
    return float(np.sum(scores[1:] + scores[:-1]) / 2 / (len(scores) - 1))


def effective_robustness(scores: list[float], baseline: list[float]) -> float:
    """Relative robustness of ``scores`` minus the baseline curve moved to start
    at the same clean score (clipped to [0, 1]): how much better than the
    baseline the model holds up, with the clean scores equalised. 0 for the
    baseline itself; positive = degrades more slowly."""
    scores, baseline = np.asarray(scores, float), np.asarray(baseline, float)
    expected = np.clip(baseline - baseline[0] + scores[0], 0.0, 1.0)
    return relative_robustness(list(scores - expected))
