"""Corruptions of text and audio: typing errors, word omission and shuffles,
background noise of several kinds and mixing at a given SNR.

Shared by the demo generator (realistic noise) and the robustness sweeps
(controlled imperfection); every function draws from the ``rng`` it is given.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import next_fast_len

NOISE_KINDS = ("white", "pink", "babble", "hum")


def typos(text: str, rng: np.random.Generator, rate: float) -> str:
    """Swaps a letter with the next one, drops it or doubles it, per letter."""
    hits = rng.random(len(text)) < rate
    operations = rng.integers(3, size=len(text))
    chars = list(text)
    for position in np.flatnonzero(hits)[::-1]:
        if not chars[position].isalpha():
            continue
        if operations[position] == 0:
            following = position + 1
            if following < len(chars) and chars[following].isalpha():
                chars[position], chars[following] = chars[following], chars[position]
        elif operations[position] == 1:
            del chars[position]
        else:
            chars.insert(position, chars[position])
    return "".join(chars)


def drop_words(text: str, rng: np.random.Generator, rate: float) -> str:
    """Omits each word with probability ``rate``."""
    words = text.split()
    return " ".join(
        w for w, keep in zip(words, rng.random(len(words)) >= rate, strict=True) if keep
    )


def shuffle_words(text: str, rng: np.random.Generator, rate: float) -> str:
    """Moves a share ``rate`` of the words to random other positions among
    themselves (the rest keep their place)."""
    words = text.split()
    chosen = np.flatnonzero(rng.random(len(words)) < rate)
    targets = rng.permutation(chosen)
    shuffled = list(words)
    for source, target in zip(chosen, targets, strict=True):
        shuffled[target] = words[source]
    return " ".join(shuffled)


def mix_at_snr(
    clean: np.ndarray, noise: np.ndarray, snr_db: float, *, reference=None
) -> np.ndarray:
    """``clean`` plus unit-RMS ``noise`` scaled to ``snr_db`` below the RMS of
    ``reference`` (default: ``clean``; pass the speech alone when ``clean`` is
    padded with silence)."""
    reference = clean if reference is None else reference
    rms = np.sqrt(np.mean(np.square(reference))) if len(reference) else 1e-3
    return clean + noise * rms / 10 ** (snr_db / 20)


def make_noise(
    kind: str, length: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Unit-RMS background noise: white, pink, babble (speech-shaped, syllable-rate
    modulated) or hum (mains harmonics over brown noise)."""
    if kind == "white":
        noise = rng.standard_normal(length)
    elif kind == "pink":
        noise = coloured_noise(rng, length, sample_rate, exponent=1.0)
    elif kind == "babble":
        carrier = coloured_noise(
            rng, length, sample_rate, exponent=1.0, band=(200.0, 4000.0)
        )
        control_rate = 100  # envelope of ~6 talkers at syllable rate (2-8 Hz)
        n_control = length * control_rate // sample_rate + 2
        envelopes = [
            np.abs(coloured_noise(rng, n_control, control_rate, 0.0, (2.0, 8.0)))
            for _ in range(6)
        ]
        envelope = np.interp(
            np.arange(length) * control_rate / sample_rate,
            np.arange(n_control),
            np.sum(envelopes, axis=0),
        )
        noise = carrier * envelope
    elif kind == "hum":
        mains = rng.choice([50.0, 60.0])
        time = np.arange(length) / sample_rate
        phases = rng.uniform(0, 2 * np.pi, size=8)
        noise = sum(
            np.sin(2 * np.pi * mains * k * time + phases[k - 1]) / k
            for k in range(1, 9)
        )
        noise = noise / np.std(noise) + 0.3 * coloured_noise(
            rng, length, sample_rate, exponent=2.0
        )
    else:
        raise ValueError(f"Unknown noise type '{kind}': white, pink, babble or hum.")
    return noise / max(np.std(noise), 1e-12)


def coloured_noise(
    rng: np.random.Generator,
    length: int,
    sample_rate: float,
    exponent: float,
    band: tuple[float, float] | None = None,
) -> np.ndarray:
    """Gaussian noise with power spectral density ~ 1/f**exponent, optionally
    band-limited by smooth high-pass and low-pass edges; unit RMS."""
    fast_length = next_fast_len(length, real=True)  # FFT of a smooth size, then cut
    spectrum = np.fft.rfft(rng.standard_normal(fast_length))
    freqs = np.maximum(np.fft.rfftfreq(fast_length, 1.0 / sample_rate), 1e-3)
    gain = freqs ** (-exponent / 2)
    if band is not None:
        low, high = band
        gain = gain / (1 + (low / freqs) ** 4) / (1 + (freqs / high) ** 4)
    gain[0] = 0.0
    noise = np.fft.irfft(spectrum * gain, fast_length)[:length]
    return noise / max(np.std(noise), 1e-12)
