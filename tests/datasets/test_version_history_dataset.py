import json

import pytest
from kedro.io import DatasetError, Version
from kedro_datasets.json import JSONDataset

from multimodal_fusion.datasets import VersionHistoryDataset


def test_history_reads_every_version_oldest_first(tmp_path):
    filepath = str(tmp_path / "metrics.json")
    for version, value in [
        ("2026-01-02T00.00.00.000Z", 2),
        ("2026-01-01T00.00.00.000Z", 1),
    ]:
        JSONDataset(filepath=filepath, version=Version(None, version)).save(
            {"v": value}
        )
    history = VersionHistoryDataset(filepath=filepath)
    assert history.exists()
    assert history.load() == {
        "2026-01-01T00.00.00.000Z": {"v": 1},
        "2026-01-02T00.00.00.000Z": {"v": 2},
    }


def test_history_of_nothing_is_empty_and_read_only(tmp_path):
    history = VersionHistoryDataset(filepath=str(tmp_path / "metrics.json"))
    assert not history.exists()
    assert history.load() == {}
    with pytest.raises(DatasetError, match="read-only"):
        history.save({"v": 1})
    assert json.dumps(history._describe(), default=str)
