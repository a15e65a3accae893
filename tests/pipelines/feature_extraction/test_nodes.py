import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from kedro.io import MemoryDataset

from multimodal_fusion import featurization
from multimodal_fusion.datasets import (
    ArrayFolderDataset,
    AudioClip,
    AudioFolderDataset,
)
from multimodal_fusion.pipelines.feature_extraction.nodes import (
    extract_audio_features,
    featurize_texts,
    fit_audio_standardizer,
    fit_text_featurizer,
    fit_token_vocabulary,
    standardize_audio_features,
    tokenize_texts,
)
from multimodal_fusion.text import tokenize
from tests.toy_data import SMALL_AUDIO

AUDIO = {**SMALL_AUDIO, "n_jobs": 1, "batch_size": 2}
RATE = 16000


def _contacts():
    return pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "text": ["lost card", "card arrived", "zebra secret", ""],
            "split": ["train", "train", "test", "train"],
            "has_text": [True, True, True, False],
            "has_audio": [True, False, True, True],
        }
    )


def _clip(freq, seconds=0.8, rate=RATE):
    t = np.arange(int(rate * seconds)) / rate
    return AudioClip((0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)


def _loaders(clips):
    loaded = []

    def loader(clip_id):
        def load():
            loaded.append(clip_id)
            return clips[clip_id]

        return load

    return {cid: loader(cid) for cid in clips}, loaded


def test_text_vocabulary_comes_from_the_training_split_only():
    featurizer = fit_text_featurizer(_contacts(), {"min_df": 1})
    vocabulary = set(featurizer.vectorizers_[0].vocabulary_)
    assert {"lost", "card", "arrived"} <= vocabulary
    assert "zebra" not in vocabulary
    features = featurize_texts(_contacts(), featurizer)
    assert features["ids"].tolist() == ["a", "b", "c", "d"]
    assert features["tfidf"][3].getnnz() == 0
    assert features["present"].tolist() == [True, True, True, False]


def _stream(chunks, path):
    """Saves a generator node's chunks as the catalog would, then loads them."""
    dataset = ArrayFolderDataset(path=path)
    for chunk in chunks:
        dataset.save(chunk)
    return dataset.load()


def _extract(tmp_path, contacts, loaders, **params):
    chunks = extract_audio_features(contacts, loaders, {**AUDIO, **params}, RATE)
    return _stream(chunks, tmp_path / "raw_audio_features")


def _standardize(tmp_path, contacts, raw):
    standardizer = fit_audio_standardizer(contacts, raw)
    chunks = standardize_audio_features(raw, standardizer)
    return standardizer, _stream(chunks, tmp_path / "audio_features")


def test_token_vocabulary_comes_from_the_training_split_only():
    params = {"min_count": 1, "max_words": 100, "max_length": 5}
    vocabulary = fit_token_vocabulary(_contacts(), params)
    # Ids by decreasing training frequency, ties alphabetical; 0 pads, 1 is OOV.
    assert vocabulary.vocabulary_ == {"card": 2, "arrived": 3, "lost": 4}
    tokens = tokenize_texts(_contacts(), vocabulary)
    assert tokens["ids"].tolist() == ["a", "b", "c", "d"]
    assert tokens["tokens"].tolist() == [[4, 2], [2, 3], [1, 1], [0, 0]]
    assert tokens["tokens"].dtype == np.int32
    assert tokens["present"].tolist() == [True, True, True, False]


def test_token_sequences_are_cut_and_rare_words_left_out():
    contacts = _contacts().assign(
        text=["card card lost now", "card arrived", "", "new card please"],
        split="train",
        has_text=[True, True, False, True],
    )
    vocabulary = fit_token_vocabulary(
        contacts, {"min_count": 2, "max_words": 100, "max_length": 3}
    )
    assert vocabulary.vocabulary_ == {"card": 2}
    assert vocabulary.length_ == 3
    assert tokenize_texts(contacts, vocabulary)["tokens"][0].tolist() == [2, 2, 1]
    assert tokenize("[EMAIL] it's 42 times!") == ["[EMAIL]", "it's", "42", "times"]


def test_no_text_at_all_gives_zero_length_sequences():
    contacts = _contacts().assign(has_text=False, text="")
    vocabulary = fit_token_vocabulary(contacts, {})
    assert tokenize_texts(contacts, vocabulary)["tokens"].shape == (4, 0)


def test_audio_features_cover_every_contact_and_only_load_its_clips(tmp_path):
    clips = {
        "a": _clip(300),
        "c": _clip(900, seconds=2.0),
        "d": _clip(500),
        "x": _clip(1),
    }
    loaders, loaded = _loaders(clips)
    features = _extract(tmp_path, _contacts(), loaders)
    assert sorted(loaded) == ["a", "c", "d"]
    assert features["ids"].tolist() == ["a", "b", "c", "d"]
    assert features["pooled"].shape == (4, 280)
    assert features["n_frames"].tolist() == [50, 0, 50, 50]  # capped at max_frames
    assert features["frames_total"].tolist() == [81, 0, 201, 81]  # whole clips
    assert features["frames"].shape == (150, 40)  # the kept frames, stacked
    assert not features["pooled"][1].any()
    assert not np.allclose(features["pooled"][0], features["pooled"][2])


def test_standardised_frames_are_as_long_as_the_longest_clip(tmp_path):
    clips = {"a": _clip(300, 0.2), "c": _clip(900, 0.3), "d": _clip(500, 0.1)}
    raw = _extract(tmp_path, _contacts(), _loaders(clips)[0])
    assert raw["n_frames"].tolist() == [21, 0, 31, 11]
    _, features = _standardize(tmp_path, _contacts(), raw)
    assert features["frames"].shape == (4, 31, 40)
    assert not features["frames"][0, 21:].any()
    assert not features["frames"][1].any()
    assert features["ids"].tolist() == ["a", "b", "c", "d"]
    assert features["present"].tolist() == [True, False, True, True]


def test_standardizer_is_fit_on_training_clips_and_leaves_padding_zero(tmp_path):
    clips = {"a": _clip(300, 0.2), "c": _clip(900, 0.3), "d": _clip(500, 0.1)}
    raw = _extract(tmp_path, _contacts(), _loaders(clips)[0])
    standardizer, scaled = _standardize(tmp_path, _contacts(), raw)
    train = raw["pooled"][[0, 3]]
    np.testing.assert_allclose(standardizer.pooled_mean_, train.mean(axis=0), rtol=1e-5)
    # Training frames: clip a (rows 0-20) and clip d (the last 11 of 63 rows).
    train_frames = np.concatenate([raw["frames"][:21], raw["frames"][52:]])
    np.testing.assert_allclose(
        standardizer.frame_mean_, train_frames.mean(0), rtol=1e-4
    )
    assert standardizer.n_clips_seen_ == 2 and standardizer.n_frames_seen_ == 32
    assert not scaled["pooled"][1].any()
    assert not scaled["frames"][0, 21:].any()
    np.testing.assert_allclose(scaled["pooled"][[0, 3]].mean(axis=0), 0, atol=1e-4)


def test_no_audio_at_all_gives_zero_width_features(tmp_path):
    contacts = _contacts().assign(has_audio=False)
    features = _extract(tmp_path, contacts, {})
    assert features["pooled"].shape == (4, 0)
    assert features["frames"].shape == (0, 40)
    _, scaled = _standardize(tmp_path, contacts, features)
    assert scaled["pooled"].shape == (4, 0)
    assert scaled["frames"].shape == (4, 0, 40)


def test_clips_at_another_rate_are_resampled_to_the_processing_rate(tmp_path):
    slow = _clip(300, rate=8000)
    resampled = librosa.resample(
        slow.waveform, orig_sr=8000, target_sr=RATE, res_type="soxr_hq"
    )
    clips = {"a": _clip(300), "c": slow, "d": _clip(500)}
    features = _extract(tmp_path / "a", _contacts(), _loaders(clips)[0])
    clips["c"] = AudioClip(resampled, RATE)
    expected = _extract(tmp_path / "b", _contacts(), _loaders(clips)[0])
    np.testing.assert_allclose(features["pooled"], expected["pooled"], atol=1e-4)
    np.testing.assert_allclose(features["frames"], expected["frames"], atol=1e-3)


def test_a_contact_without_its_clip_is_named(tmp_path):
    with pytest.raises(
        ValueError, match=r"1 contacts .* no clip in clean_audio \(first: c\)"
    ):
        _extract(tmp_path, _contacts(), _loaders({"a": _clip(300), "d": _clip(9)})[0])


def test_an_undecodable_clip_is_named(tmp_path):
    def broken():
        raise RuntimeError("truncated FLAC stream")

    loaders = {"a": lambda: _clip(300), "c": broken, "d": lambda: _clip(500)}
    with pytest.raises(ValueError, match="contact 'c': truncated FLAC"):
        _extract(tmp_path, _contacts(), loaders)


def test_features_kept_only_as_the_last_chunk_are_refused(monkeypatch):
    monkeypatch.setattr(featurization, "BLOCK_BYTES", 1)  # a chunk per batch of 2 clips
    clips = {"a": _clip(300), "c": _clip(900), "d": _clip(500)}
    memory = MemoryDataset()  # what an undeclared dataset does with chunks
    chunks = extract_audio_features(_contacts(), _loaders(clips)[0], AUDIO, RATE)
    for chunk in chunks:
        memory.save(chunk.arrays)
    assert memory.load()["ids"].tolist() == ["d"]
    with pytest.raises(ValueError, match="declare it in the catalog"):
        fit_audio_standardizer(_contacts(), memory.load())


def _write_clips(folder, n, seed=0):
    """``n`` real WAV clips of varied length, rate and channels."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for i in range(n):
        rate = (16000, 8000)[i % 2]
        samples = int(rate * rng.uniform(0.05, 1.5))
        wave = 0.1 * rng.standard_normal((samples, 1 + i % 3 // 2))
        sf.write(folder / f"c{i:03d}.wav", wave.astype(np.float32), rate)
    return folder


def test_parallel_features_equal_the_single_process_features(tmp_path, monkeypatch):
    monkeypatch.setattr(featurization, "BLOCK_BYTES", 20_000)  # several chunks
    loaders = AudioFolderDataset(path=str(_write_clips(tmp_path / "audio", 23))).load()
    contacts = pd.DataFrame(
        {"id": sorted(loaders), "split": "train", "has_audio": True}
    )
    contacts.loc[[3, 10], "has_audio"] = False
    single = _extract(tmp_path / "single", contacts, loaders, n_jobs=1, batch_size=4)
    parallel = _extract(tmp_path / "pool", contacts, loaders, n_jobs=2, batch_size=4)
    assert (
        set(single)
        == set(parallel)
        == {"ids", "present", "n_frames", "frames_total", "pooled", "frames"}
    )
    for key in single:
        np.testing.assert_array_equal(parallel[key], single[key], err_msg=key)
    assert single["frames"].shape[0] == single["n_frames"].sum() > 0
