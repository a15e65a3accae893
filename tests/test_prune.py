"""make prune-versions: old versions of real Kedro versioned datasets go,
the newest stay loadable, nothing else is touched."""

from pathlib import Path

import pytest
from kedro.io.core import Version
from kedro_datasets.json import JSONDataset
from kedro_datasets.pickle import PickleDataset

from multimodal_fusion.prune import human, main

STAMPS = [f"2026-01-0{day}T10.00.00.000Z" for day in (1, 2, 3)]


def _save_versions(root: Path) -> dict[str, Path]:
    """Three versions each of a JSON and a (nested) pickle dataset, saved by
    Kedro, plus an unversioned file and a folder that only looks versioned."""
    paths = {
        "metrics": root / "08_reporting/metrics.json",
        "model": root / "06_models/early_fusion/model.pkl",
    }
    for i, stamp in enumerate(STAMPS):
        JSONDataset(filepath=str(paths["metrics"]), version=Version(None, stamp)).save(
            {"run": i}
        )
        PickleDataset(filepath=str(paths["model"]), version=Version(None, stamp)).save(
            b"x" * 1000
        )
    (root / "03_primary").mkdir(parents=True)
    (root / "03_primary/contacts.parquet").write_bytes(b"data")
    lookalike = root / "01_raw/audio" / STAMPS[0]  # no <name> inside: not a version
    lookalike.mkdir(parents=True)
    (lookalike / "clip.wav").write_bytes(b"RIFF")
    return paths


def test_prune_keeps_the_newest_versions_of_every_versioned_dataset(tmp_path, capsys):
    paths = _save_versions(tmp_path)
    main(["--keep", "2", str(tmp_path)])

    for path in paths.values():
        assert sorted(p.name for p in path.iterdir()) == STAMPS[1:]
    assert JSONDataset(
        filepath=str(paths["metrics"]), version=Version(None, None)
    ).load() == {"run": 2}
    assert (tmp_path / "03_primary/contacts.parquet").exists()
    assert (tmp_path / "01_raw/audio" / STAMPS[0] / "clip.wav").exists()
    out = capsys.readouterr().out
    assert out.count("removed ") == 2 and STAMPS[0] in out
    freed = (paths["model"] / STAMPS[1] / "model.pkl").stat().st_size + (
        paths["metrics"] / STAMPS[1] / "metrics.json"
    ).stat().st_size
    assert f"2 old version(s) removed, {human(freed)} freed" in out

    main(["--keep", "2", str(tmp_path)])  # nothing more to do
    assert "0 old version(s) removed, 0 B freed" in capsys.readouterr().out


def test_prune_refuses_to_keep_nothing(tmp_path):
    _save_versions(tmp_path)
    with pytest.raises(SystemExit):
        main(["--keep", "0", str(tmp_path)])
    assert len(list((tmp_path / "08_reporting/metrics.json").iterdir())) == 3


def test_human_units():
    assert [human(n) for n in (512, 1536, 5 * 2**20, 3 * 2**30)] == [
        "512 B",
        "1.5 KB",
        "5.0 MB",
        "3.0 GB",
    ]
