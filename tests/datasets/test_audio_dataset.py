import json
import pickle

import numpy as np
import pytest
import soundfile as sf
from kedro.io import DatasetError, Version

from multimodal_fusion.datasets import AudioClip, AudioDataset, AudioFolderDataset
from multimodal_fusion.datasets.audio_dataset import AudioDecodeError
from multimodal_fusion.datasets.audio_folder_dataset import SAVING_MARKER


def _tone(sample_rate=16000, seconds=0.25, channels=1):
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    mono = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono, -mono], axis=1)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_round_trip_keeps_rate_length_and_shape(tmp_path, suffix):
    dataset = AudioDataset(filepath=str(tmp_path / f"clip{suffix}"))
    dataset.save(AudioClip(_tone(), 16000))
    clip = dataset.load()
    assert clip.sample_rate == 16000
    assert clip.waveform.dtype == np.float32
    assert clip.waveform.shape == (4000,)
    tolerance = 0.05 if suffix == ".ogg" else 1e-3
    assert np.max(np.abs(clip.waveform - _tone())) < tolerance


def test_stereo_loads_as_samples_by_channels(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(path, _tone(sample_rate=8000, channels=2), 8000)
    clip = AudioDataset(filepath=str(path)).load()
    assert clip.waveform.shape == (2000, 2)
    assert clip.duration == pytest.approx(0.25)


def test_save_args_choose_the_subtype(tmp_path):
    path = tmp_path / "float.wav"
    AudioDataset(filepath=str(path), save_args={"subtype": "FLOAT"}).save(
        AudioClip(_tone(), 16000)
    )
    assert sf.info(str(path)).subtype == "FLOAT"


def test_undecodable_file_error_names_the_file(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio")
    with pytest.raises(DatasetError, match="notes.wav.*Convert it"):
        AudioDataset(filepath=str(path)).load()


def test_unknown_suffix_is_refused_on_save(tmp_path):
    dataset = AudioDataset(filepath=str(tmp_path / "clip.mp4"))
    with pytest.raises(DatasetError, match="suffix '.mp4'"):
        dataset.save(AudioClip(_tone(), 16000))


def test_info_reads_the_header_only(tmp_path):
    path = tmp_path / "clip.flac"
    sf.write(path, _tone(seconds=1.0), 16000)
    info = AudioDataset(filepath=str(path)).info()
    assert (info.sample_rate, info.frames, info.channels) == (16000, 16000, 1)
    assert (info.format, info.subtype, info.missing_bytes) == ("FLAC", "PCM_16", 0)
    assert info.duration == 1.0


def test_info_reports_a_truncated_wav(tmp_path):
    path = tmp_path / "cut.wav"
    sf.write(path, _tone(seconds=1.0), 16000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    info = AudioDataset(filepath=str(path)).info()
    assert info.missing_bytes == len(data) - 44 - (len(data) // 2 - 44)


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"", "empty_file"),
        (b"id,text\nhello\n", "unrecognised_format"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt \x02", "corrupt_header"),
    ],
)
def test_info_names_the_kind_of_defect(tmp_path, content, kind):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioDecodeError, match="bad.wav") as caught:
        AudioDataset(filepath=str(path)).info()
    assert caught.value.kind == kind


def test_blocks_decode_the_clip_piece_by_piece(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(path, _tone(channels=2), 16000)
    blocks = list(AudioDataset(filepath=str(path)).blocks(blocksize=1500))
    assert [b.shape for b in blocks] == [(1500, 2), (1500, 2), (1000, 2)]
    assert all(b.dtype == np.float32 for b in blocks)


def test_preview_summarises_the_clip(tmp_path):
    dataset = AudioDataset(filepath=str(tmp_path / "clip.wav"))
    dataset.save(AudioClip(_tone(), 16000))
    preview = json.loads(dataset.preview())
    assert preview["sample_rate"] == 16000
    assert preview["duration_s"] == 0.25
    assert preview["peak"] == pytest.approx(0.5, abs=1e-3)


def test_versioned_saves_keep_every_version(tmp_path):
    filepath = str(tmp_path / "clip.wav")
    first = AudioDataset(
        filepath=filepath, version=Version(None, "2026-01-01T00.00.00.000Z")
    )
    first.save(AudioClip(_tone(), 16000))
    second = AudioDataset(
        filepath=filepath, version=Version(None, "2026-01-02T00.00.00.000Z")
    )
    second.save(AudioClip(_tone() * 0.5, 16000))
    versions = sorted(p.name for p in (tmp_path / "clip.wav").iterdir())
    assert versions == ["2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"]
    latest = AudioDataset(filepath=filepath, version=Version(None, None)).load()
    assert np.max(np.abs(latest.waveform)) == pytest.approx(0.25, abs=1e-3)
    pinned = AudioDataset(
        filepath=filepath, version=Version("2026-01-01T00.00.00.000Z", None)
    ).load()
    assert np.max(np.abs(pinned.waveform)) == pytest.approx(0.5, abs=1e-3)


def test_versioned_load_without_a_version_fails_clearly(tmp_path):
    dataset = AudioDataset(
        filepath=str(tmp_path / "clip.wav"), version=Version(None, None)
    )
    with pytest.raises(DatasetError, match="Did not find any versions"):
        dataset.load()


def test_folder_loads_lazily_by_relative_path(tmp_path):
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "a.wav", _tone(), 16000)
    sf.write(tmp_path / "sub" / "b.flac", _tone(), 8000)
    clips = AudioFolderDataset(path=str(tmp_path)).load()
    assert sorted(clips) == ["a.wav", "sub/b.flac"]
    assert callable(clips["a.wav"])
    assert clips["sub/b.flac"]().sample_rate == 8000


def test_folder_round_trip_with_suffix(tmp_path):
    folder = AudioFolderDataset(path=str(tmp_path / "out"), filename_suffix=".flac")
    folder.save(
        {"c1": AudioClip(_tone(), 16000), "c2": lambda: AudioClip(_tone(), 8000)}
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "c1.flac",
        "c2.flac",
    ]
    loaded = folder.load()
    assert loaded["c2"]().sample_rate == 8000


def test_empty_folder_fails_unless_allowed(tmp_path):
    with pytest.raises(DatasetError, match="No partitions found"):
        AudioFolderDataset(path=str(tmp_path)).load()
    assert (
        AudioFolderDataset(path=str(tmp_path / "missing"), allow_empty=True).load()
        == {}
    )


def test_folder_refuses_links_out_of_it_and_non_files(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    sf.write(outside / "secret.wav", _tone(), 16000)
    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(folder / "ok.wav", _tone(), 16000)
    (folder / "inside.wav").symlink_to(folder / "ok.wav")
    (folder / "out.wav").symlink_to(outside / "secret.wav")
    (folder / "outdir").symlink_to(outside)
    (folder / "dangling.wav").symlink_to(folder / "missing.wav")
    (folder / ".DS_Store").write_bytes(b"junk")
    sources = AudioFolderDataset(path=str(folder)).load()
    refusals = {k: s.refusal and s.refusal[0] for k, s in sources.items()}
    assert refusals == {
        "dangling.wav": "not_a_file",
        "inside.wav": None,
        "ok.wav": None,
        "out.wav": "outside_root",
        "outdir": "outside_root",
    }
    with pytest.raises(DatasetError, match="Refusing to read 'out.wav'"):
        sources["out.wav"]()
    with pytest.raises(DatasetError, match="Refusing"):
        sources["out.wav"].info()
    assert sources["inside.wav"]().sample_rate == 16000


def test_folder_save_is_lazy_and_marks_an_unfinished_save(tmp_path):
    folder = AudioFolderDataset(path=str(tmp_path / "out"), filename_suffix=".flac")
    calls = []

    def clip(name):
        def make():
            calls.append(name)
            # the marker is there while the partitions are being written
            assert (tmp_path / "out" / SAVING_MARKER).exists()
            assert not folder.exists()
            return AudioClip(_tone(), 16000)

        return make

    folder.save({"b": clip("b"), "a": clip("a")})
    assert calls == ["a", "b"]  # one at a time, in key order
    assert not (tmp_path / "out" / SAVING_MARKER).exists()
    assert folder.exists()
    (tmp_path / "out" / SAVING_MARKER).touch()  # as if a save was interrupted
    assert not folder.exists()
    assert sorted(folder.load()) == ["a", "b"]  # the marker is no partition


def test_folder_loaders_honour_load_args_and_pickle(tmp_path):
    sf.write(tmp_path / "a.wav", _tone(), 16000)
    folder = AudioFolderDataset(
        path=str(tmp_path),
        dataset={
            "type": "multimodal_fusion.datasets.AudioDataset",
            "load_args": {"dtype": "float64", "always_2d": True},
        },
    )
    load = pickle.loads(pickle.dumps(folder.load()["a.wav"]))
    clip = load()
    assert clip.waveform.dtype == np.float64 and clip.waveform.shape == (4000, 1)


def test_folder_with_filesystem_arguments_builds_each_clip_dataset(tmp_path):
    sf.write(tmp_path / "a.wav", _tone(), 16000)
    folder = AudioFolderDataset(path=str(tmp_path), fs_args={"auto_mkdir": False})
    assert folder.load()["a.wav"]().sample_rate == 16000


def test_folder_clip_removed_after_listing_names_the_file(tmp_path):
    sf.write(tmp_path / "gone.wav", _tone(), 16000)
    clips = AudioFolderDataset(path=str(tmp_path)).load()
    (tmp_path / "gone.wav").unlink()
    with pytest.raises(DatasetError, match="gone.wav"):
        clips["gone.wav"]()


class _CountingAudioDataset(AudioDataset):
    """An ``AudioDataset`` that records the files it was built for."""

    built: list[str] = []

    def __init__(self, **kwargs):
        if kwargs["filepath"]:  # not the one the folder's repr builds
            type(self).built.append(kwargs["filepath"])
        super().__init__(**kwargs)


def _write_clips(folder):
    folder.mkdir(exist_ok=True)
    sf.write(folder / "mono.wav", _tone(), 16000, subtype="PCM_16")
    sf.write(folder / "stereo.wav", _tone(8000, channels=2), 8000, subtype="PCM_24")
    sf.write(folder / "mono.flac", _tone(), 16000)
    sf.write(folder / "stereo.flac", _tone(22050, channels=2), 22050)
    return folder


def test_local_folder_builds_no_dataset_per_clip(tmp_path, monkeypatch):
    built = []
    real_init = AudioDataset.__init__

    def counting_init(self, **kwargs):
        built.append(kwargs["filepath"])
        real_init(self, **kwargs)

    monkeypatch.setattr(AudioDataset, "__init__", counting_init)
    sources = AudioFolderDataset(path=str(_write_clips(tmp_path))).load()
    for source in sources.values():
        source()
        source.info()
        list(source.blocks(1000))
        pickle.loads(pickle.dumps(source))()
    # (kedro's load logging builds one, for the folder's repr, on no file)
    assert len(sources) == 4
    assert not [path for path in built if str(tmp_path) in str(path)]


def test_other_clip_datasets_are_built_on_first_use_only(tmp_path):
    _CountingAudioDataset.built = []
    folder = AudioFolderDataset(
        path=str(_write_clips(tmp_path)),
        dataset={"type": _CountingAudioDataset, "load_args": {"always_2d": True}},
    )
    sources = folder.load()
    assert _CountingAudioDataset.built == []  # listing builds none
    clip = sources["stereo.flac"]()
    sources["stereo.flac"].info()
    assert _CountingAudioDataset.built == [str(tmp_path / "stereo.flac")]
    assert clip.waveform.shape == (5512, 2)
    copy = pickle.loads(pickle.dumps(sources["stereo.flac"]))
    assert np.array_equal(copy().waveform, clip.waveform)


@pytest.mark.parametrize(
    "load_args",
    [None, {"always_2d": True}, {"dtype": "float64"}, {"dtype": "int16"}],
)
def test_folder_decodes_bit_for_bit_as_the_clip_dataset(tmp_path, load_args):
    folder = _write_clips(tmp_path / "audio")
    sources = AudioFolderDataset(
        path=str(folder),
        dataset={
            "type": "multimodal_fusion.datasets.AudioDataset",
            "load_args": load_args,
        },
    ).load()
    for key in ["mono.wav", "stereo.wav", "mono.flac", "stereo.flac"]:
        dataset = AudioDataset(filepath=str(folder / key), load_args=load_args)
        expected = dataset.load()
        for source in (sources[key], pickle.loads(pickle.dumps(sources[key]))):
            clip = source()
            assert clip.sample_rate == expected.sample_rate
            assert clip.waveform.dtype == expected.waveform.dtype
            assert clip.waveform.shape == expected.waveform.shape
            assert clip.waveform.tobytes() == expected.waveform.tobytes()
            assert source.info() == dataset.info()
            blocks = list(source.blocks(1000))
            assert len(blocks) == len(list(dataset.blocks(1000)))
            assert (
                np.concatenate(blocks).tobytes()
                == np.concatenate(list(dataset.blocks(1000))).tobytes()
            )


def test_local_sources_report_defects_as_the_clip_dataset(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_bytes(b"not audio at all")
    sources = AudioFolderDataset(path=str(tmp_path)).load()
    for key, kind in [("empty.wav", "empty_file"), ("text.wav", "unrecognised_format")]:
        dataset = AudioDataset(filepath=str(tmp_path / key))
        with pytest.raises(AudioDecodeError) as expected:
            dataset.info()
        with pytest.raises(AudioDecodeError) as got:
            sources[key].info()
        assert got.value.kind == expected.value.kind == kind
        # the same message up to libsndfile's, which shows the file object
        assert str(got.value).split(" (")[0] == str(expected.value).split(" (")[0]
    with pytest.raises(AudioDecodeError, match="text.wav") as got:
        sources["text.wav"]()
    assert got.value.kind == "unrecognised_format"
    (tmp_path / "text.wav").unlink()
    with pytest.raises(AudioDecodeError, match="text.wav") as got:
        list(sources["text.wav"].blocks())
    assert got.value.kind == "unreadable"


def test_remote_folder_builds_each_clip_dataset_lazily(tmp_path):
    path = f"memory://{tmp_path.name}/audio"
    folder = AudioFolderDataset(path=path, filename_suffix=".flac")
    folder.save({"a": AudioClip(_tone(), 16000), "b": AudioClip(_tone(), 8000)})
    sources = AudioFolderDataset(path=path, filename_suffix=".flac").load()
    assert sorted(sources) == ["a", "b"]
    assert sources["b"]().sample_rate == 8000
    assert sources["a"].info().frames == 4000
    assert sum(len(b) for b in sources["a"].blocks(1000)) == 4000


def test_folder_refusals_hold_in_subfolders_and_through_a_linked_folder(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    sf.write(outside / "secret.wav", _tone(), 16000)
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    sf.write(real / "top.wav", _tone(), 16000)
    sf.write(real / "sub" / "deep.wav", _tone(), 16000)
    (real / "sub" / "out.wav").symlink_to(outside / "secret.wav")
    (real / "sub" / "up.wav").symlink_to(real / "top.wav")
    (tmp_path / "linked").symlink_to(real)  # the folder itself may be a link
    for folder in (real, tmp_path / "linked"):
        sources = AudioFolderDataset(path=str(folder)).load()
        refusals = {k: s.refusal and s.refusal[0] for k, s in sources.items()}
        assert refusals == {
            "top.wav": None,
            "sub/deep.wav": None,
            "sub/up.wav": None,
            "sub/out.wav": "outside_root",
        }
        assert sources["sub/up.wav"]().sample_rate == 16000
