"""A corpus of bad raw input, each case a real file, and where each must land.

:func:`write_corpus` writes ``texts.csv`` (UTF-8 with a BOM, some lines in
Windows-1252), ``labels.csv`` (Windows-1252, semicolons) and ``audio/`` under a
folder, beside a base of good contacts so that the pipeline can split and train.

``EXPECTED_RECORDS`` maps ``(source, location)`` of every record that must be
rejected to its reason; any other rejected record is a failure. ``EXPECTED_IDS``
maps ids to their outcome: a split kind (``kept``), ``unlabeled``, or the reason
of the id's rejection.
"""

from __future__ import annotations

import codecs
import io
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

CLASSES = ("billing", "delivery", "refund")
N_GOOD = 24
LONG_CLIP = "a_30min.wav"
PII = ["07870 168125", "4111 1111 1111 1111", "jane.doe@example.com"]


def _tone(rate: int = 16000, seconds: float = 0.5, amplitude: float = 0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * 330 * t)).astype(np.float32)


def _wav(samples, rate: int = 16000, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def _sparse_wav(path: Path, seconds: int, rate: int = 8000) -> None:
    """A real 16-bit WAV of ``seconds`` of silence, written sparsely (no disk)."""
    data_bytes = seconds * rate * 2
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    header += b"data" + struct.pack("<I", data_bytes)
    with path.open("wb") as f:
        f.write(header)
        f.truncate(len(header) + data_bytes)


def _audio_cases(audio: Path, outside: Path) -> dict[str, str | None]:
    """Writes the bad and odd clips; returns file → expected reason (None: kept)."""
    good = _wav(_tone())
    nan = _tone()
    nan[100] = np.nan
    inf = _tone()
    inf[200] = np.inf
    cases: dict[str, tuple[bytes, str | None]] = {
        "a_trunc_data.wav": (good[: len(good) // 2], "truncated"),
        "a_trunc_header.wav": (good[:20], "corrupt_header"),
        "a_zero.wav": (b"", "empty_file"),
        "a_text.wav": (b"id,text\nthis is not audio\n", "unrecognised_format"),
        "a_unsupported.m4a": (
            b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00isomiso2" + bytes(64),
            "unrecognised_format",
        ),
        "a_u8.wav": (_wav(_tone(), subtype="PCM_U8"), None),
        "a_s24.wav": (_wav(_tone(), subtype="PCM_24"), None),
        "a_float.wav": (_wav(_tone(), subtype="FLOAT"), None),
        "a_stereo.wav": (_wav(np.stack([_tone(), -_tone()], axis=1)), None),
        "a_rate1.wav": (
            _wav(_tone(rate=1, seconds=10), rate=1),
            "sample_rate_out_of_range",
        ),
        "a_rate192k.wav": (_wav(_tone(rate=192000), rate=192000), None),
        "a_one_sample.wav": (_wav(np.array([0.5], np.float32)), "too_short"),
        "a_silent.wav": (_wav(np.zeros(8000, np.float32)), "silent"),
        "a_clipped_hard.wav": (_wav(np.sign(_tone()) * 0.999), "clipped"),
        "a_clipped_mild.wav": (_wav(np.clip(_tone(amplitude=1.01), -1, 1)), None),
        "a_nan.wav": (_wav(nan, subtype="FLOAT"), "non_finite_samples"),
        "a_inf.wav": (_wav(inf, subtype="FLOAT"), "non_finite_samples"),
        "dup_audio.wav": (good, "duplicate_id"),
        "sub/dup_audio.flac": (None, "duplicate_id"),
    }
    (audio / "sub").mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (data, reason) in cases.items():
        if data is not None:
            (audio / name).write_bytes(data)
        expected[name] = reason
    sf.write(audio / "sub" / "dup_audio.flac", _tone(), 16000)
    _sparse_wav(audio / LONG_CLIP, seconds=30 * 60)
    expected[LONG_CLIP] = "too_long"
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.wav").write_bytes(good)
    (audio / "a_link_out.wav").symlink_to(outside / "secret.wav")
    expected["a_link_out.wav"] = "outside_root"
    return expected


# Text rows after the good ones: (id, text). Line numbers are computed on write.
LONG_TEXT = "word " * 20_480  # 100 kB


def write_corpus(root: Path) -> dict[str, dict]:
    """Writes the corpus under ``root`` (texts.csv, labels.csv, audio/).

    Returns:
        ``{"records": {(source, location): reason}, "ids": {id: outcome}}``.
    """
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    records: dict[tuple[str, str], str] = {}
    ids: dict[str, str] = {}

    # Good base: 24 contacts with text, a clip and a label.
    text_lines = ["id,text"]
    label_lines = ["id;label;speaker"]
    for i in range(N_GOOD):
        cid, label = f"g{i:02d}", CLASSES[i % 3]
        text_lines.append(f"{cid},my {label} problem number {i}")
        label_lines.append(f"{cid};{label};spk{i % 6}")
        sf.write(audio / f"{cid}.wav", _tone(seconds=0.3 + 0.01 * i), 16000)
        ids[cid] = "kept"

    # Audio cases: each has a label, no text.
    for name, reason in _audio_cases(audio, root.parent / "outside").items():
        stem = Path(name).stem
        if reason:
            records["raw_audio", name] = reason
            ids[stem] = "no_usable_modality"
        else:
            ids[stem] = "kept"
        if f"{stem};" not in "\n".join(label_lines):
            label_lines.append(f"{stem};{CLASSES[len(label_lines) % 3]};spk9")

    # Text cases. (line text, id, expected record reason or None)
    text_cases = [
        ('t_newline,"two\nlines with ""quotes"", and a comma"', "t_newline", None),
        (f"t_long,{LONG_TEXT}", "t_long", "text_too_long"),
        ("t_cp1252,caf\xe9 cr\xe8me \u20ac5", "t_cp1252", None),
        ("t_empty_text,", "t_empty_text", None),
        ("t_dup,first version", "t_dup", "duplicate_id"),
        ("t_dup,second version", "t_dup", "duplicate_id"),
        ("t_copy,the same row twice", "t_copy", None),
        ("t_copy,the same row twice", "t_copy", "duplicate_row"),
        (",a row without an id", "", "missing_id"),
        ("t_malformed,unquoted, comma", "t_malformed", "malformed_row"),
        ("id,text", "id", "malformed_row"),
        ("../escape,a path in the id", "../escape", "invalid_id"),
        ("/abs/id,an absolute id", "/abs/id", "invalid_id"),
        (f"t_pii,call me on {PII[0]} card {PII[1]} or {PII[2]}", "t_pii", None),
        ("t_only,text without label or audio", "t_only", None),
        ("t_rare,a class of its own", "t_rare", None),
        ("t_badsplit,label with a bad split", "t_badsplit", None),
        ("t_duplabel,label given twice", "t_duplabel", None),
        ("\u200bt_zw ,invisible marks around the id", "t_zw", None),
    ]
    cp1252_ids = {"t_cp1252"}
    raw_lines: list[bytes] = [codecs.BOM_UTF8 + text_lines[0].encode()]
    raw_lines += [line.encode() for line in text_lines[1:]]
    for line, cid, reason in text_cases:
        number = 1 + sum(raw.count(b"\n") + 1 for raw in raw_lines)
        encoded = line.encode("cp1252" if cid in cp1252_ids else "utf-8")
        raw_lines.append(encoded)
        if reason:
            records["raw_texts", f"line {number}"] = reason
    (root / "texts.csv").write_bytes(b"\n".join(raw_lines) + b"\n")
    sf.write(audio / "t_long.wav", _tone(), 16000)  # lives on with its audio
    ids.update(
        {
            "t_newline": "kept",
            "t_long": "kept",
            "t_cp1252": "kept",
            "t_empty_text": "no_usable_modality",
            "t_dup": "no_usable_modality",
            "t_copy": "kept",
            "t_malformed": "no_usable_modality",
            "../escape": "invalid_id",
            "/abs/id": "invalid_id",
            "t_pii": "kept",
            "t_only": "unlabeled",
            "t_rare": "rare_class",
            "t_badsplit": "label_rejected",
            "t_duplabel": "label_rejected",
            "t_zw": "kept",
            "l_only": "no_usable_modality",
            "id": "no_usable_modality",  # the repeated header row
        }
    )

    # Labels: Windows-1252 with semicolons.
    label_cases = [
        ("t_newline;billing;spk1", None),
        ("t_long;delivery;spk2", None),
        ("t_cp1252;refund;spk\xe9", None),
        ("t_empty_text;billing;spk3", None),
        ("t_copy;delivery;spk4", None),
        ("t_pii;refund;spk5", None),
        ("t_rare;r\xe4re;spk1", None),
        ("t_badsplit;billing;spk2;holdout", "invalid_split"),
        ("t_duplabel;billing;spk3", "duplicate_id"),
        ("t_duplabel;refund;spk3", "duplicate_id"),
        ("t_zw;billing;spk4", None),
        ("l_only;delivery;spk5", None),
    ]
    label_lines[0] = "id;label;speaker;split"
    for line, reason in label_cases:
        label_lines.append(line)
        if reason:
            records["raw_labels", f"line {len(label_lines)}"] = reason
    (root / "labels.csv").write_bytes(
        ("\r\n".join(label_lines) + "\r\n").encode("cp1252")
    )
    return {"records": records, "ids": ids}
