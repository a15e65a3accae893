"""Scans files for planted PII strings: every byte of every file, and the cells
of Parquet files (whose pages may be compressed). Also runs as a script:

    python -m tests.pii_scan data/01_raw/demo_manifest.csv data

reads the ``planted_pii`` column of the demo manifest and scans ``data/``
(except ``data/01_raw``, the raw input); it prints each hit and exits 1 on any.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd


def _needles(pii: Iterable[str]) -> list[bytes]:
    """Each PII string, lower-cased, and for numbers also without separators."""
    needles = set()
    for raw in pii:
        value = raw.strip().lower()
        if not value:
            continue
        needles.add(value.encode())
        digits = re.sub(r"\D", "", value)
        if len(digits) >= 7 and not re.search(r"[a-z]", value):
            needles.add(digits.encode())
    return sorted(needles)


def _contents(path: Path) -> Iterable[bytes]:
    yield path.read_bytes()
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        yield frame.to_csv(index=False).encode()


def scan_for(pii: Iterable[str], root: Path, exclude: Iterable[Path] = ()) -> list[str]:
    """``"<file>: <needle>"`` for every PII string found in a file under root."""
    needles = _needles(pii)
    excluded = [Path(p).resolve() for p in exclude]
    hits = []
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        if any(path.resolve().is_relative_to(e) for e in excluded):
            continue
        for content in _contents(path):
            lowered = content.lower()
            hits += [f"{path}: {n.decode()}" for n in needles if n in lowered]
    return sorted(set(hits))


def planted_pii(manifest: Path) -> list[str]:
    """The PII strings the demo planted (``planted_pii``, ``|``-joined)."""
    column = pd.read_csv(manifest, dtype=str, keep_default_na=False)["planted_pii"]
    return [value for cell in column for value in cell.split("|") if value]


def main(argv: list[str]) -> int:
    manifest, root = Path(argv[0]), Path(argv[1])
    pii = planted_pii(manifest)
    hits = scan_for(pii, root, exclude=[root / "01_raw"])
    print(*hits, sep="\n") if hits else None
    print(f"{len(pii)} planted PII strings, {len(hits)} found under {root}")
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
