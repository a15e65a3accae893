import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from multimodal_fusion.datasets import AudioFolderDataset
from multimodal_fusion.pipelines.data_processing.nodes import (
    clean_labels,
    clean_texts,
    join_contacts,
    prepare_audio,
    split_contacts,
    summarise_data,
)

AUDIO = {"sample_rate": 16000, "top_db": 35, "target_dbfs": -20.0, "max_seconds": 1.0}
SPLIT = {
    "test_size": 0.2,
    "val_size": 0.2,
    "group_column": None,
    "test_ids_matching": None,
}


def _tone(rate, seconds):
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.fixture
def raw_audio(tmp_path):
    folder = tmp_path / "audio"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "a.wav", _tone(8000, 0.5), 8000)
    sf.write(folder / "b.flac", np.stack([_tone(44100, 2.0)] * 2, axis=1), 44100)
    sf.write(folder / "sub" / "silent.wav", np.zeros(800, np.float32), 8000)
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    sf.write(folder / "dup.wav", _tone(8000, 0.5), 8000)
    sf.write(folder / "dup.flac", _tone(8000, 0.5), 8000)
    return AudioFolderDataset(path=str(folder)).load()


def test_clean_texts_masks_pii_and_rejects_duplicate_and_empty_ids():
    raw = pd.DataFrame(
        {
            "id": ["a", "b", "b", "", "c"],
            "text": ["Mail ME@x.org", "one", "two", "orphan", ""],
        }
    )
    texts, rejected = clean_texts(raw, {"lowercase": True})
    assert texts.to_dict("list") == {"id": ["a", "c"], "text": ["mail [EMAIL]", ""]}
    assert sorted(rejected["reason"]) == [
        "duplicate id: 2 rows in raw_texts",
        "duplicate id: 2 rows in raw_texts",
        "empty id (data row 4)",
    ]


def test_clean_texts_names_missing_columns():
    with pytest.raises(ValueError, match=r"raw_texts lacks the column\(s\) \['text'\]"):
        clean_texts(pd.DataFrame({"id": ["a"], "message": ["x"]}), {"lowercase": True})


def test_clean_labels_keeps_optional_columns_and_rejects_bad_splits():
    raw = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "label": ["x", "", "y"],
            "split": ["TEST", "", "holdout"],
        }
    )
    labels, rejected = clean_labels(raw)
    assert labels.to_dict("list") == {
        "id": ["a", "b"],
        "label": ["x", ""],
        "speaker": ["", ""],
        "split": ["test", ""],
    }
    assert rejected["id"].tolist() == ["c"]


def test_prepare_audio_normalises_good_clips_and_quarantines_bad_ones(raw_audio):
    clips, index, rejected = prepare_audio(raw_audio, AUDIO)
    assert sorted(clips) == ["a", "b"]
    assert all(c.sample_rate == 16000 and c.waveform.ndim == 1 for c in clips.values())
    assert index.set_index("id").loc["b", "truncated"]
    assert index.set_index("id").loc["b", "source_rate"] == 44100
    reasons = rejected.set_index("id")["reason"]
    assert reasons["broken"].startswith("undecodable audio file 'broken.wav'")
    assert reasons["silent"].startswith("silent audio")
    assert reasons["dup"].startswith("duplicate id: 2 audio files")
    assert len(clips) + len(rejected) == 5  # every distinct id accounted for


def test_join_keeps_single_modality_rows_and_rejects_orphans():
    texts = pd.DataFrame({"id": ["a", "b", "e"], "text": ["hello", "", ""]})
    index = pd.DataFrame(
        {
            "id": ["a", "c"],
            "source_file": ["a.wav", "c.wav"],
            "source_rate": [8000, 8000],
            "duration_s": [1.0, 1.0],
            "truncated": [False, False],
        }
    )
    labels = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "label": ["x", "y", "x", ""],
            "speaker": "",
            "split": "",
        }
    )
    bad = pd.DataFrame({"id": ["e"], "source": ["raw_audio"], "reason": ["broken"]})
    contacts, rejected = join_contacts(texts, index, labels, bad)
    assert contacts["id"].tolist() == ["a", "c"]
    assert contacts.set_index("id")[["has_text", "has_audio"]].to_dict("index") == {
        "a": {"has_text": True, "has_audio": True},
        "c": {"has_text": False, "has_audio": True},
    }
    by_id = rejected.groupby("id")["reason"].apply(list).to_dict()
    assert by_id["b"] == ["no usable modality: empty text and no audio"]
    assert by_id["d"] == ["no usable modality: empty text and no audio"]
    assert by_id["e"] == [
        "broken",
        "no usable modality left after the rejections above",
    ]


def _contacts(n=60, speakers=6, split=""):
    return pd.DataFrame(
        {
            "id": [f"c{i:03d}" for i in range(n)],
            "label": [["x", "y", "z"][i % 3] for i in range(n)],
            "speaker": [f"s{(i // 3) % speakers}" for i in range(n)],
            "split": split,
        }
    )


def test_split_is_stratified_deterministic_and_keeps_unlabeled_apart():
    contacts = _contacts()
    contacts.loc[0, "label"] = ""
    first = split_contacts(contacts, SPLIT, seed=1)
    assert first.loc[0, "split"] == "unlabeled"
    counts = first["split"].value_counts()
    assert (counts["test"], counts["val"]) == (12, 12)
    assert (
        first.groupby("split")["label"].nunique()[["train", "val", "test"]].eq(3).all()
    )
    again = split_contacts(contacts, SPLIT, seed=1)
    assert first["split"].tolist() == again["split"].tolist()


def test_split_groups_speakers():
    result = split_contacts(_contacts(), {**SPLIT, "group_column": "speaker"}, seed=3)
    assert (result.groupby("speaker")["split"].nunique() == 1).all()


def test_split_honours_the_split_column_and_the_test_pattern():
    contacts = _contacts(split="train")
    contacts.loc[:5, "split"] = "test"
    contacts.loc[6:11, "split"] = "val"
    assert (
        split_contacts(contacts, SPLIT, seed=0)["split"].tolist()
        == contacts["split"].tolist()
    )
    pattern = {**SPLIT, "test_ids_matching": r"[0-4]$"}
    result = split_contacts(_contacts(), pattern, seed=0)
    assert set(result.loc[result["id"].str.match(r".*[0-4]$"), "split"]) == {"test"}
    assert set(result.loc[~result["id"].str.match(r".*[0-4]$"), "split"]) == {
        "train",
        "val",
    }


def test_split_fails_clearly_when_a_split_would_be_empty():
    with pytest.raises(ValueError, match=r"split\(s\) \['val', 'test'\] are empty"):
        split_contacts(_contacts(n=1), SPLIT, seed=0)


def test_split_fails_clearly_when_the_test_pattern_matches_nothing():
    with pytest.raises(ValueError, match="'nomatch' matches no labeled id"):
        split_contacts(_contacts(), {**SPLIT, "test_ids_matching": "nomatch"}, seed=0)


def test_summary_accounts_for_every_raw_id():
    raw_texts = pd.DataFrame({"id": ["a", "b", "b"], "text": ["x", "y", "z"]})
    raw_labels = pd.DataFrame({"id": ["a", "c", "u"], "label": ["l1", "l2", ""]})
    raw_audio = {"c.wav": None, "u.wav": None, "bad.wav": None}
    contacts = pd.DataFrame(
        {
            "id": ["a", "c", "u"],
            "split": ["train", "test", "unlabeled"],
            "label": ["l1", "l2", ""],
            "has_text": [True, False, False],
            "has_audio": [False, True, True],
        }
    )
    rejected = pd.DataFrame(
        {
            "id": ["b", "b", "bad"],
            "source": ["raw_texts", "raw_texts", "raw_audio"],
            "reason": ["duplicate", "duplicate", "undecodable"],
        }
    )
    summary = summarise_data(raw_texts, raw_audio, raw_labels, contacts, rejected)
    assert summary["raw_ids"] == 5
    assert summary["outcome"] == {
        "train": 1,
        "val": 0,
        "test": 1,
        "unlabeled": 1,
        "rejected": 2,
    }
    with pytest.raises(ValueError, match="1 raw ids are unaccounted for"):
        summarise_data(
            raw_texts, {**raw_audio, "lost.wav": None}, raw_labels, contacts, rejected
        )
