"""Removes old versions of versioned datasets: ``make prune-versions KEEP=n``.

A versioned Kedro dataset is a folder ``<name>/`` holding one folder per save,
``<name>/<version>/<name>``, where the version is a timestamp such as
``2026-12-02T09.05.28.660Z``; its newest version is the one that is loaded.
Every run adds a version of each model, metric and plot, so ``data/`` grows
with every run. This keeps the newest ``--keep`` versions of every such folder
under the given root and removes the others, printing each removed version and
the bytes freed. Nothing else is touched.

    python -m multimodal_fusion.prune --keep 3 data
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

VERSION = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}\.\d{2}\.\d{2}\.\d{3}Z")


def _versions(folder: Path) -> list[Path]:
    """The version folders of a versioned dataset folder, oldest first."""
    return sorted(
        child
        for child in folder.iterdir()
        if child.is_dir()
        and not child.is_symlink()
        and VERSION.fullmatch(child.name)
        and (child / folder.name).exists()
    )


def versioned_folders(root: Path) -> list[Path]:
    """Every versioned dataset folder under ``root``."""
    folders = sorted(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink())
    return [folder for folder in folders if _versions(folder)]


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human(n_bytes: float) -> str:
    """``1536`` → ``'1.5 KB'``."""
    if n_bytes < 1024:
        return f"{n_bytes:.0f} B"
    for unit in ("KB", "MB", "GB"):
        n_bytes /= 1024
        if n_bytes < 1024 or unit == "GB":
            break
    return f"{n_bytes:.1f} {unit}"


def prune(root: Path, keep: int) -> list[tuple[Path, int]]:
    """Removes all but the newest ``keep`` versions of every versioned dataset
    folder under ``root``.

    Returns:
        The removed version folders and their sizes in bytes.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the loaded version), not {keep}")
    removed = []
    for folder in versioned_folders(root):
        for version in _versions(folder)[:-keep]:
            size = size_of(version)
            shutil.rmtree(version)
            removed.append((version, size))
    return removed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default="data", type=Path)
    parser.add_argument("--keep", type=int, default=3, help="versions to keep")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"no folder {args.root}")
    if args.keep < 1:
        parser.error("--keep must be at least 1 (the newest version is loaded)")
    removed = prune(args.root, args.keep)
    for version, size in removed:
        print(f"removed {version} ({human(size)})")
    freed = sum(size for _, size in removed)
    print(
        f"{len(removed)} old version(s) removed, {human(freed)} freed; the newest "
        f"{args.keep} of each versioned dataset under {args.root} are kept."
    )


if __name__ == "__main__":
    main()
