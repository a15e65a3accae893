import json

import fsspec
import numpy as np
import pytest
from kedro.io import DataCatalog, DatasetError

from multimodal_fusion.datasets import ArrayChunk, ArrayFolderDataset
from multimodal_fusion.datasets.array_folder_dataset import read_rows


def _arrays(start, stop):
    rows = np.arange(start, stop)
    return {
        "ids": rows.astype(str).astype("<U4"),
        "pooled": np.stack([rows, -rows], axis=1).astype(np.float32),
        "frames": np.repeat(rows, 2)[:, None].repeat(3, axis=1).astype(np.float32),
    }


def test_round_trip_loads_memory_mapped(tmp_path):
    dataset = ArrayFolderDataset(path=tmp_path / "features")
    assert not dataset.exists()
    dataset.save(_arrays(0, 5))
    loaded = dataset.load()
    assert dataset.exists()
    assert sorted(loaded) == ["frames", "ids", "pooled"]
    assert isinstance(loaded["pooled"], np.memmap)
    for key, expected in _arrays(0, 5).items():
        np.testing.assert_array_equal(loaded[key], expected)
    in_memory = ArrayFolderDataset(
        path=tmp_path / "features", load_args={"mmap_mode": None}
    )
    assert not isinstance(in_memory.load()["pooled"], np.memmap)


def test_chunks_append_and_the_folder_appears_with_the_last(tmp_path):
    path = tmp_path / "features"
    dataset = ArrayFolderDataset(path=path)
    dataset.save(_arrays(100, 102))  # an earlier, complete version
    bounds = [(0, 3), (3, 3), (3, 10)]
    for i, (start, stop) in enumerate(bounds):
        dataset.save(ArrayChunk(_arrays(start, stop), first=i == 0, last=i == 2))
        if i < 2:  # the earlier version stays whole until the last chunk
            np.testing.assert_array_equal(dataset.load()["ids"], ["100", "101"])
    loaded = ArrayFolderDataset(path=path).load()
    for key, expected in _arrays(0, 10).items():
        np.testing.assert_array_equal(loaded[key], expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features"]


def test_a_restarted_stream_discards_the_unfinished_one(tmp_path):
    dataset = ArrayFolderDataset(path=tmp_path / "features")
    dataset.save(ArrayChunk(_arrays(50, 60), first=True, last=False))  # then a crash
    dataset.save(ArrayChunk(_arrays(0, 2), first=True, last=True))
    np.testing.assert_array_equal(dataset.load()["ids"], ["0", "1"])


def test_inconsistent_chunks_are_refused(tmp_path):
    dataset = ArrayFolderDataset(path=tmp_path / "features")
    with pytest.raises(DatasetError, match="arrived before its first chunk"):
        dataset.save(ArrayChunk(_arrays(0, 2), first=False, last=True))
    dataset.save(ArrayChunk(_arrays(0, 2), first=True, last=False))
    with pytest.raises(DatasetError, match="has the arrays"):
        dataset.save(ArrayChunk({"ids": np.array(["x"])}, first=False, last=False))
    wider = {**_arrays(2, 3), "frames": np.zeros((2, 4), np.float32)}
    with pytest.raises(DatasetError, match="'frames'.*changed from float32 rows"):
        dataset.save(ArrayChunk(wider, first=False, last=True))
    assert not dataset.exists()


def test_object_arrays_are_refused_with_the_fix(tmp_path):
    dataset = ArrayFolderDataset(path=tmp_path / "features")
    with pytest.raises(
        DatasetError, match=r"'ids'.*fixed-width unicode \(astype\(str\)\)"
    ):
        dataset.save({"ids": np.array(["a", "b"], dtype=object)})


def test_empty_arrays_round_trip(tmp_path):
    dataset = ArrayFolderDataset(path=tmp_path / "features")
    dataset.save({"pooled": np.zeros((4, 0), np.float32), "frames": np.zeros((0, 40))})
    loaded = dataset.load()
    assert loaded["pooled"].shape == (4, 0) and loaded["frames"].shape == (0, 40)


def test_missing_folders_and_unknown_protocols_are_explained(tmp_path):
    with pytest.raises(DatasetError, match="run the node that writes"):
        ArrayFolderDataset(path=tmp_path / "nothing").load()
    url = f"memory:///{tmp_path.name}/nothing"
    with pytest.raises(DatasetError, match=f"No arrays at '{url}'"):
        ArrayFolderDataset(path=url).load()
    with pytest.raises(DatasetError, match="Cannot reach 'nosuchfs://b/features'"):
        ArrayFolderDataset(path="nosuchfs://b/features")


def test_remote_folder_streams_chunks_and_loads_what_a_local_one_does(tmp_path):
    url = f"memory:///{tmp_path.name}/features"
    remote = ArrayFolderDataset(path=url)
    local = ArrayFolderDataset(path=tmp_path / "local")
    remote.save(_arrays(100, 102))  # an earlier, complete version
    bounds = [(0, 3), (3, 3), (3, 10)]
    for i, (start, stop) in enumerate(bounds):
        chunk = ArrayChunk(_arrays(start, stop), first=i == 0, last=i == 2)
        remote.save(chunk)
        local.save(chunk)
        if i < 2:  # the earlier version stays whole until the last chunk
            np.testing.assert_array_equal(remote.load()["ids"], ["100", "101"])
    loaded, expected = ArrayFolderDataset(path=url).load(), local.load()
    assert sorted(loaded) == sorted(expected) == ["frames", "ids", "pooled"]
    for key, array in expected.items():
        assert not isinstance(loaded[key], np.memmap)
        assert loaded[key].dtype == array.dtype
        np.testing.assert_array_equal(loaded[key], array)
    fs = fsspec.filesystem("memory")  # nothing left beside the folder
    assert fs.ls(f"/{tmp_path.name}", detail=False) == [f"/{tmp_path.name}/features"]
    assert json.loads(remote.preview()) == json.loads(local.preview())
    assert remote._spool is None  # the local spool is gone


def test_remote_files_on_another_protocol_load_and_bad_files_are_named(tmp_path):
    dataset = ArrayFolderDataset(path=(tmp_path / "f").as_uri())  # file://
    dataset.save(_arrays(0, 4))
    assert isinstance(dataset.load()["pooled"], np.memmap)  # local: the fast path
    url = f"memory:///{tmp_path.name}/bad"
    fsspec.filesystem("memory").pipe_file(f"{url}/pooled.npy", b"not an array")
    with pytest.raises(DatasetError, match=r"bad/pooled.npy' is not a .npy array"):
        ArrayFolderDataset(path=url).load()


def test_declared_in_a_catalog_with_a_preview(tmp_path):
    catalog = DataCatalog.from_config(
        {
            "features": {
                "type": "multimodal_fusion.datasets.ArrayFolderDataset",
                "path": str(tmp_path / "features"),
            }
        }
    )
    catalog.save("features", _arrays(0, 3))
    assert catalog.load("features")["pooled"].shape == (3, 2)
    preview = json.loads(ArrayFolderDataset(path=tmp_path / "features").preview())
    assert preview["frames"] == {"shape": [6, 3], "dtype": "float32"}


def test_read_rows_equals_slicing_for_maps_views_and_arrays(tmp_path):
    dataset = ArrayFolderDataset(path=tmp_path / "features")
    dataset.save(_arrays(0, 50))
    frames = dataset.load()["frames"]
    expected = _arrays(0, 50)["frames"]
    for start, stop in [(0, 100), (17, 40), (99, 100), (40, 17)]:
        np.testing.assert_array_equal(
            read_rows(frames, start, stop), expected[start:stop]
        )
        np.testing.assert_array_equal(
            read_rows(expected, start, stop), expected[start:stop]
        )
    view = frames[10:]
    np.testing.assert_array_equal(read_rows(view, 5, 8), expected[15:18])
