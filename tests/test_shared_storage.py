"""Clips read from and features written to shared storage through fsspec: an
in-process ``memory://`` filesystem, and S3 served by moto's server (a real
HTTP endpoint that s3fs talks to from worker processes and Dask workers, which
``memory://`` cannot reach). The features must be the local folder's, byte for
byte."""

from __future__ import annotations

import socket
import uuid

import fsspec
import pandas as pd
import pytest
from kedro.io import DataCatalog

from multimodal_fusion.datasets import ArrayFolderDataset, AudioFolderDataset
from multimodal_fusion.datasets.audio_dataset import AudioDecodeError
from multimodal_fusion.featurization import extract_audio_features
from multimodal_fusion.intake import prepare_audio
from multimodal_fusion.parallel import Engine
from tests.toy_data import SMALL_AUDIO, write_toy_dataset

AUDIO = {**SMALL_AUDIO, "floor_db": 50, "n_jobs": 1, "batch_size": 3}
RATE = 16000
N_CLIPS = 12
PREPARE = {"sample_rate": RATE, "top_db": 35, "target_dbfs": -20.0}


@pytest.fixture(scope="module")
def local_clips(tmp_path_factory):
    """Toy clips in a local folder and their contacts."""
    audio = write_toy_dataset(tmp_path_factory.mktemp("clips"), n=N_CLIPS)["audio"]
    ids = sorted(p.stem for p in audio.glob("*.wav"))
    contacts = pd.DataFrame({"id": ids, "has_audio": [i != 4 for i in range(N_CLIPS)]})
    return audio, contacts


@pytest.fixture(scope="module")
def local_features(local_clips):
    audio, contacts = local_clips
    return _stream(
        contacts, AudioFolderDataset(path=str(audio), filename_suffix=".wav")
    )


def _stream(contacts, folder, *, engine=None, features_at=None, **params):
    """Features of the folder's clips, streamed chunk by chunk into an
    ``ArrayFolderDataset`` (a local temporary one unless ``features_at``)."""
    dataset = features_at or ArrayFolderDataset(
        path=f"memory:///features-{uuid.uuid4().hex}"
    )
    chunks = extract_audio_features(
        contacts, folder.load(), {**AUDIO, **params}, RATE, engine, log_cuts=False
    )
    for chunk in chunks:
        dataset.save(chunk)
    return dataset.load()


def _assert_identical(ours, theirs):
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key].dtype == theirs[key].dtype, key
        assert ours[key].tobytes() == theirs[key].tobytes(), key


def _upload(fs, audio, root):
    for file in sorted(audio.glob("*.wav")):
        fs.put_file(str(file), f"{root}/{file.name}")


def test_clips_in_a_memory_folder_give_the_local_features(local_clips, local_features):
    audio, contacts = local_clips
    url = "memory:///shared-storage/audio"
    _upload(fsspec.filesystem("memory"), audio, url)
    folder = AudioFolderDataset(path=url, filename_suffix=".wav")
    sources = folder.load()
    assert sources["t0000"]._path == f"{url}/t0000.wav"  # opened by URL
    _assert_identical(_stream(contacts, folder), local_features)


def _prepared(raw_url, clean_url, **credentials):
    """data_processing's audio step: raw clips checked, prepared and saved as
    ``clean_audio`` (FLAC), then its index and its clips' bytes."""
    raw = AudioFolderDataset(path=raw_url, filename_suffix=".wav", **credentials)
    clips, index, rejected = prepare_audio(raw.load(), PREPARE)
    clean = AudioFolderDataset(path=clean_url, filename_suffix=".flac")
    clean.save(clips)
    fs, root = fsspec.core.url_to_fs(clean_url)
    files = {f.rsplit("/", 1)[1]: fs.cat_file(f) for f in fs.find(root)}
    return index, rejected, files, clean


def test_raw_audio_on_memory_prepares_the_clean_clips_of_a_local_folder(
    local_clips, tmp_path
):
    audio, contacts = local_clips
    raw_url = "memory:///shared-storage/raw"
    _upload(fsspec.filesystem("memory"), audio, raw_url)
    index, rejected, files, clean = _prepared(raw_url, "memory:///shared-storage/clean")
    local_index, local_rejected, local_files, local_clean = _prepared(
        str(audio), str(tmp_path / "clean")
    )
    pd.testing.assert_frame_equal(index, local_index)
    assert len(rejected) == len(local_rejected) == 0
    assert files == local_files and len(files) == N_CLIPS
    _assert_identical(_stream(contacts, clean), _stream(contacts, local_clean))


def test_a_missing_remote_clip_is_named(local_clips):
    audio, _ = local_clips
    url = "memory:///shared-storage/vanishing"
    fs = fsspec.filesystem("memory")
    _upload(fs, audio, url)
    sources = AudioFolderDataset(path=url, filename_suffix=".wav").load()
    fs.rm(f"{url}/t0001.wav")
    with pytest.raises(AudioDecodeError, match=f"'{url}/t0001.wav'") as error:
        sources["t0001"].info()
    assert error.value.kind == "unreadable"


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on a free port and the credentials that reach it."""
    server_module = pytest.importorskip(
        "moto.server", reason="moto[server] is in the test extra"
    )
    pytest.importorskip("s3fs", reason="s3fs is in the test extra")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    credentials = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {
            "endpoint_url": f"http://127.0.0.1:{port}",
            "region_name": "us-east-1",
        },
    }
    boto3 = pytest.importorskip("boto3", reason="moto's dependency")
    boto3.client(
        "s3",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        **credentials["client_kwargs"],
    ).create_bucket(Bucket="clips")
    try:
        yield credentials
    finally:
        server.stop()


def test_s3_clips_and_features_match_the_local_ones_on_every_engine(
    local_clips, local_features, s3
):
    audio, contacts = local_clips
    _upload(fsspec.filesystem("s3", **s3), audio, "clips/audio")
    catalog = DataCatalog.from_config(  # as docs/operations.md declares them
        {
            "clean_audio": {
                "type": "multimodal_fusion.datasets.AudioFolderDataset",
                "path": "s3://clips/audio",
                "filename_suffix": ".wav",
                "credentials": "s3_data",
            },
            "raw_audio_features": {
                "type": "multimodal_fusion.datasets.ArrayFolderDataset",
                "path": "s3://clips/features",
                "credentials": "s3_data",
            },
        },
        credentials={"s3_data": s3},
    )
    folder, features = catalog["clean_audio"], catalog["raw_audio_features"]
    assert folder.load()["t0000"]._path == "s3://clips/audio/t0000.wav"
    # two worker processes: each opens its clips from the URL and credentials
    _assert_identical(
        _stream(contacts, folder, features_at=features, n_jobs=2), local_features
    )
    _assert_identical(
        ArrayFolderDataset(path="s3://clips/features", credentials=s3).load(),
        local_features,
    )
    pytest.importorskip("distributed", reason="the dask extra")
    from multimodal_fusion.dask_engine import cluster

    with cluster(Engine("dask", n_workers=1)) as address:  # a spawned worker
        engine = {"name": "dask", "address": address}
        _assert_identical(_stream(contacts, folder, engine=engine), local_features)
