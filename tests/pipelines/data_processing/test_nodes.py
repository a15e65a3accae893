import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from multimodal_fusion.datasets import AudioFolderDataset, TolerantCSVDataset
from multimodal_fusion.errors import UserInputError
from multimodal_fusion.intake import (
    clean_labels,
    clean_texts,
    join_contacts,
    prepare_audio,
)
from multimodal_fusion.pipelines.data_processing.nodes import (
    split_contacts,
    summarise_data,
)

AUDIO = {
    "sample_rate": 16000,
    "top_db": 35,
    "target_dbfs": -20.0,
    "limits": {"max_seconds": 1.0},
}
LABELS = {"min_class_size": 1}
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
    assert rejected[["id", "location", "reason"]].values.tolist() == [
        ["", "row 4", "missing_id"],
        ["b", "row 2", "duplicate_id"],
        ["b", "row 3", "duplicate_id"],
    ]
    assert "2 rows of raw_texts have this id" in rejected["detail"].iloc[1]


def test_clean_texts_keeps_one_exact_copy_and_rejects_long_texts():
    raw = pd.DataFrame(
        {
            "id": ["a", "a", "b", "c/../d"],
            "text": ["same", "same", "x" * 11, "ok"],
            "_line": [2, 3, 5, 9],
        }
    )
    texts, rejected = clean_texts(raw, {"lowercase": True, "max_chars": 10})
    assert texts["id"].tolist() == ["a"]
    assert rejected[["id", "location", "reason"]].values.tolist() == [
        ["c/../d", "line 9", "invalid_id"],
        ["a", "line 3", "duplicate_row"],
        ["b", "line 5", "text_too_long"],
    ]
    assert rejected["detail"].iloc[2].startswith("the text has 11 characters")


def test_clean_texts_names_missing_columns():
    with pytest.raises(ValueError, match=r"raw_texts lacks the column\(s\) \['text'\]"):
        clean_texts(pd.DataFrame({"id": ["a"], "message": ["x"]}), {"lowercase": True})


def test_clean_labels_keeps_optional_columns_and_rejects_bad_splits():
    raw = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "label": ["x", "", "y", "z"],
            "split": ["TEST", "", "holdout", "train"],
        }
    )
    labels, rejected = clean_labels(raw, LABELS)
    assert rejected["reason"].tolist() == ["invalid_split"]
    assert labels.to_dict("list") == {
        "id": ["a", "b", "d"],
        "label": ["x", "", "z"],
        "speaker": ["", "", ""],
        "split": ["test", "", "train"],
    }
    assert rejected["id"].tolist() == ["c"]


def test_a_header_only_texts_csv_or_an_empty_memory_dataset_means_no_texts(
    tmp_path,
):
    (tmp_path / "texts.csv").write_text("id,text\n")
    header_only = TolerantCSVDataset(filepath=str(tmp_path / "texts.csv")).load()
    for raw in (header_only, {}, None):  # {}: `MemoryDataset` with `data: {}`
        texts, rejected = clean_texts(raw, {"lowercase": True, "max_chars": 10})
        assert texts.empty and list(texts.columns) == ["id", "text"]
        assert rejected.empty


def test_clean_labels_needs_two_classes_with_enough_rows(tmp_path):
    (tmp_path / "labels.csv").write_text("id,label\n")
    header_only = TolerantCSVDataset(filepath=str(tmp_path / "labels.csv")).load()
    with pytest.raises(UserInputError, match=r"raw_labels has 0 class\(es\)"):
        clean_labels(header_only, LABELS)
    one_class = pd.DataFrame({"id": list("abcd"), "label": ["x", "x", "x", "y"]})
    clean_labels(one_class, LABELS)  # two classes of at least one row
    with pytest.raises(
        UserInputError, match=r"2 class\(es\), 1 of them with at least min_class_size"
    ):
        clean_labels(one_class, {"min_class_size": 2})


def test_prepare_audio_checks_clips_and_prepares_them_lazily(raw_audio):
    clips, index, rejected = prepare_audio(raw_audio, AUDIO)
    assert sorted(clips) == ["a"]  # b lasts 2 s, more than max_seconds
    clip = clips["a"]()  # prepared only when called (when clean_audio saves it)
    assert clip.sample_rate == 16000 and clip.waveform.ndim == 1
    row = index.set_index("id").loc["a"]
    assert (row["source_file"], row["source_rate"], row["format"]) == (
        "a.wav",
        8000,
        "WAV/PCM_16",
    )
    reasons = rejected.set_index("location")["reason"].to_dict()
    assert reasons == {
        "b.flac": "too_long",
        "broken.wav": "corrupt_header",
        "dup.flac": "duplicate_id",
        "dup.wav": "duplicate_id",
        "sub/silent.wav": "silent",
    }
    detail = rejected.set_index("location")["detail"]
    assert "broken.wav" in detail["broken.wav"]
    assert "lasts 2.0 s, more than max_seconds (1.0 s" in detail["b.flac"]
    # every file accounted for
    assert len(index) + len(rejected) == len(raw_audio)


def test_prepare_audio_refuses_paths_out_of_the_folder_without_loading_them():
    def never(*_):
        raise AssertionError("must not be loaded")

    raw = {"../x.wav": never, "/etc/y.wav": never, "a/b.wav": never}
    clips, index, rejected = prepare_audio(raw, AUDIO)
    assert clips == {} and index.empty
    assert rejected.set_index("location")["reason"].to_dict() == {
        "../x.wav": "outside_root",
        "/etc/y.wav": "outside_root",
        "a/b.wav": "unreadable",
    }


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
    bad = pd.DataFrame(
        {
            "id": ["e"],
            "source": ["raw_audio"],
            "location": ["e.wav"],
            "reason": ["silent"],
            "detail": ["..."],
        }
    )
    none = bad.iloc[:0]
    contacts, rejected = join_contacts(texts, index, labels, none, none, bad, LABELS)
    assert contacts["id"].tolist() == ["a", "c"]
    assert contacts.set_index("id")[["has_text", "has_audio"]].to_dict("index") == {
        "a": {"has_text": True, "has_audio": True},
        "c": {"has_text": False, "has_audio": True},
    }
    verdicts = rejected[rejected["source"] == "contact"].set_index("id")
    assert verdicts["reason"].to_dict() == dict.fromkeys("bde", "no_usable_modality")
    assert verdicts["detail"].to_dict() == {
        "b": "no usable text or audio: text empty, audio none",
        "d": "no usable text or audio: text none, audio none",
        "e": "no usable text or audio: text empty, audio rejected (silent)",
    }


def _frame(**columns):
    return pd.DataFrame(columns)


def test_join_rejects_ids_with_a_rejected_label_and_rare_classes():
    texts = _frame(id=list("abcdefg"), text=["hi"] * 7)
    index = _frame(id=[], source_file=[])
    labels = _frame(id=list("abcdef"), label=list("xxxyyz"), speaker="", split="")
    bad_label = _frame(
        id=["g"],
        source=["raw_labels"],
        location=["line 8"],
        reason=["duplicate_id"],
        detail=["..."],
    )
    none = bad_label.iloc[:0]
    contacts, rejected = join_contacts(
        texts, index, labels, none, bad_label, none, {"min_class_size": 3}
    )
    assert contacts["id"].tolist() == list("abc")
    verdicts = rejected[rejected["source"] == "contact"].set_index("id")["reason"]
    assert verdicts.to_dict() == {
        "d": "rare_class",
        "e": "rare_class",
        "f": "rare_class",
        "g": "label_rejected",
    }
    detail = rejected.set_index("id").loc["f"]
    assert "label 'z' has 1 labelled contact(s)" in detail["detail"]


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


def test_split_fails_clearly_when_too_few_contacts_to_stratify():
    contacts = _contacts(n=8)
    with pytest.raises(UserInputError, match="Cannot hold out a test split of 20%"):
        split_contacts(contacts, SPLIT, seed=0)


def test_split_fails_clearly_when_a_class_has_no_training_contact():
    contacts = _contacts(split="train")
    contacts.loc[:5, "split"] = "test"
    contacts.loc[6:11, "split"] = "val"
    contacts.loc[0, "label"] = "only_in_test"
    with pytest.raises(ValueError, match="none in train: 'only_in_test'"):
        split_contacts(contacts, SPLIT, seed=0)


def test_split_fails_clearly_when_the_test_pattern_matches_nothing():
    with pytest.raises(ValueError, match="'nomatch' matches no labeled id"):
        split_contacts(_contacts(), {**SPLIT, "test_ids_matching": "nomatch"}, seed=0)


def _rejections(*rows):
    return pd.DataFrame(
        [(i, src, "", reason, "") for i, src, reason in rows],
        columns=["id", "source", "location", "reason", "detail"],
    )


def test_summary_accounts_for_every_raw_record_and_id():
    raw_texts = pd.DataFrame({"id": ["a", "b", "b", ""], "text": ["x", "y", "z", "w"]})
    raw_labels = pd.DataFrame({"id": ["a", "c", "u"], "label": ["l1", "l2", ""]})
    raw_audio = {"c.wav": None, "u.wav": None, "bad.wav": None}
    texts = pd.DataFrame({"id": ["a"], "text": ["x"]})
    labels = raw_labels
    audio_index = pd.DataFrame(
        {
            "id": ["c", "u"],
            "duration_s": [1.0, 2.0],
            "source_rate": [8000, 16000],
            "channels": [1, 2],
            "clipped_share": [0.0, 0.01],
        }
    )
    contacts = pd.DataFrame(
        {
            "id": ["a", "c", "u"],
            "split": ["train", "test", "unlabeled"],
            "label": ["l1", "l2", ""],
            "has_text": [True, False, False],
            "has_audio": [False, True, True],
        }
    )
    rejected = _rejections(
        ("b", "raw_texts", "duplicate_id"),
        ("b", "raw_texts", "duplicate_id"),
        ("", "raw_texts", "missing_id"),
        ("bad", "raw_audio", "silent"),
        ("b", "contact", "no_usable_modality"),
        ("bad", "contact", "no_usable_modality"),
    )
    args = (raw_texts, raw_audio, raw_labels, texts, audio_index, labels)
    summary = summarise_data(*args, contacts, rejected)
    assert summary["raw_ids"] == 5
    assert summary["outcome"] == {
        "train": 1,
        "val": 0,
        "test": 1,
        "unlabeled": 1,
        "rejected": 2,
    }
    assert summary["rejected_ids"] == {"no_usable_modality": 2}
    assert summary["records"]["raw_texts"] == {
        "total": 4,
        "accepted": 1,
        "rejected": {"duplicate_id": 2, "missing_id": 1},
    }
    assert summary["audio"]["multichannel"] == 1
    with pytest.raises(ValueError, match="Accounting error in raw_audio"):
        summarise_data(
            raw_texts, {**raw_audio, "lost.wav": None}, *args[2:], contacts, rejected
        )
    with pytest.raises(ValueError, match="1 raw ids are unaccounted for"):
        summarise_data(*args, contacts, rejected.iloc[:-1])
