"""A tiny synthetic text+audio dataset written as real raw files, for fast tests.

Each class has a keyword in its text and a tone pitch in its audio; a share of the
texts are vague and a share of the clips are pure noise, so each modality alone
misses some contacts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

# Small, fast audio feature parameters (16 kHz clips) for tests that call the
# feature extraction directly.
SMALL_AUDIO = {
    "n_fft": 512,
    "hop_length": 160,
    "n_mels": 40,
    "max_frames": 50,
    "n_mfcc": 20,
    "n_segments": 4,
}
CLASSES = ["billing", "delivery", "password", "refund"]
KEYWORDS = {
    "billing": "invoice charge bill",
    "delivery": "parcel courier late",
    "password": "login reset locked",
    "refund": "money back return",
}


def write_toy_dataset(root: Path, *, n: int = 96, seed: int = 0) -> dict[str, Path]:
    """Writes texts.csv, labels.csv and audio/<id>.wav under ``root``.

    Returns:
        The paths of the three raw datasets.
    """
    rng = np.random.default_rng(seed)
    audio_dir = root / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    texts, labels = [], []
    for i in range(n):
        cid, label = f"t{i:04d}", CLASSES[i % len(CLASSES)]
        speaker = f"s{(i // len(CLASSES)) % 8}"
        vague_text = i % 5 == 0
        noise_audio = i % 5 == 1
        words = "please help" if vague_text else f"my {KEYWORDS[label]} issue"
        texts.append((cid, f"{words} mail me a{i}@example.com"))
        labels.append((cid, label, speaker))
        rate = 8000 if i % 2 else 16000
        t = np.arange(int(rate * 0.6)) / rate
        pitch = 300 + 150 * CLASSES.index(label)
        tone = 0.0 if noise_audio else 0.5 * np.sin(2 * np.pi * pitch * t)
        wave = tone + 0.05 * rng.standard_normal(t.size)
        sf.write(audio_dir / f"{cid}.wav", wave.astype(np.float32), rate)
    paths = {
        "texts": root / "texts.csv",
        "labels": root / "labels.csv",
        "audio": audio_dir,
    }
    pd.DataFrame(texts, columns=["id", "text"]).to_csv(paths["texts"], index=False)
    pd.DataFrame(labels, columns=["id", "label", "speaker"]).to_csv(
        paths["labels"], index=False
    )
    return paths
