import numpy as np
import pandas as pd

from multimodal_fusion.datasets import AudioClip
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

AUDIO = {
    "n_fft": 512,
    "hop_length": 160,
    "n_mels": 40,
    "max_frames": 50,
    "n_mfcc": 20,
    "n_segments": 4,
}


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


def _clip(freq, seconds=0.8):
    t = np.arange(int(16000 * seconds)) / 16000
    return AudioClip((0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)


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


def test_audio_features_cover_every_contact_and_only_load_its_clips():
    clips = {
        "a": _clip(300),
        "c": _clip(900, seconds=2.0),
        "d": _clip(500),
        "x": _clip(1),
    }
    loaders, loaded = _loaders(clips)
    features = extract_audio_features(_contacts(), loaders, AUDIO)
    assert sorted(loaded) == ["a", "c", "d"]
    assert features["pooled"].shape == (4, 280)
    assert features["frames"].shape == (4, 50, 40)  # capped at max_frames
    assert features["n_frames"].tolist() == [50, 0, 50, 50]
    assert not features["pooled"][1].any() and not features["frames"][1].any()
    assert not np.allclose(features["pooled"][0], features["pooled"][2])


def test_frames_are_as_long_as_the_longest_clip():
    clips = {"a": _clip(300, 0.2), "c": _clip(900, 0.3), "d": _clip(500, 0.1)}
    features = extract_audio_features(_contacts(), _loaders(clips)[0], AUDIO)
    assert features["n_frames"].tolist() == [21, 0, 31, 11]
    assert features["frames"].shape == (4, 31, 40)
    assert not features["frames"][0, 21:].any()


def test_standardizer_is_fit_on_training_clips_and_leaves_padding_zero():
    clips = {"a": _clip(300, 0.2), "c": _clip(900, 0.3), "d": _clip(500, 0.1)}
    features = extract_audio_features(_contacts(), _loaders(clips)[0], AUDIO)
    standardizer = fit_audio_standardizer(_contacts(), features)
    train = features["pooled"][[0, 3]]
    np.testing.assert_allclose(standardizer.pooled_mean_, train.mean(axis=0), rtol=1e-5)
    train_frames = np.concatenate(
        [features["frames"][0, :21], features["frames"][3, :11]]
    )
    np.testing.assert_allclose(
        standardizer.frame_mean_, train_frames.mean(0), rtol=1e-4
    )
    scaled = standardize_audio_features(features, standardizer)
    assert not scaled["pooled"][1].any()
    assert not scaled["frames"][0, 21:].any()
    np.testing.assert_allclose(scaled["pooled"][[0, 3]].mean(axis=0), 0, atol=1e-4)


def test_no_audio_at_all_gives_zero_width_features():
    contacts = _contacts().assign(has_audio=False)
    features = extract_audio_features(contacts, {}, AUDIO)
    assert features["pooled"].shape == (4, 0)
    assert features["frames"].shape == (4, 0, 40)
    scaled = standardize_audio_features(
        features, fit_audio_standardizer(contacts, features)
    )
    assert scaled["pooled"].shape == (4, 0)
