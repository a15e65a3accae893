"""The bad-input corpus (tests/bad_input_corpus.py) through ``data_processing`` in
a real Kedro session: every case lands where it must, the accounting adds up,
huge or out-of-folder clips are never read, and no PII reaches the outputs.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from multimodal_fusion.datasets import (
    AudioFolderDataset,
    audio_dataset,
    audio_folder_dataset,
)
from multimodal_fusion.intake import prepare_audio
from tests.bad_input_corpus import LONG_CLIP, PII, write_corpus
from tests.pii_scan import scan_for
from tests.project_copy import capture_logs, copy_project, outputs, run_session


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    """A project copy on the corpus, after one ``data_processing`` run; the
    files that were decoded (header or samples) are recorded."""
    project = copy_project(tmp_path_factory.mktemp("corpus") / "project")
    expected = write_corpus(project / "data" / "01_raw")
    opened: dict[str, list[str]] = {"info": [], "blocks": [], "load": []}
    readers = {"info": "read_info", "blocks": "read_blocks", "load": "read_clip"}
    with pytest.MonkeyPatch.context() as patch:
        # every read of a clip's file, by a dataset or a folder's source, goes
        # through these functions: spy on them where they are looked up
        for method, calls in opened.items():
            original = getattr(audio_dataset, readers[method])

            def spy(source, *args, _original=original, _calls=calls, **kw):
                _calls.append(Path(str(kw.get("name") or source)).name)
                return _original(source, *args, **kw)

            for module in (audio_dataset, audio_folder_dataset):
                if hasattr(module, readers[method]):  # the folder decodes by path
                    patch.setattr(module, readers[method], spy)
        with capture_logs() as log:
            run_session(project, pipeline_name="data_processing")
    return {"project": project, **expected, "opened": opened, "log": log.text}


def _rejected(project: Path) -> pd.DataFrame:
    return pd.read_csv(
        project / outputs() / "02_intermediate/rejected.csv",
        dtype=str,
        keep_default_na=False,
    )


def _summary(project: Path) -> dict:
    folder = project / outputs() / "08_reporting/data_summary.json"
    (version,) = sorted(folder.iterdir())
    return json.loads((version / "data_summary.json").read_text())


def test_every_bad_record_is_rejected_with_its_reason(corpus):
    rejected = _rejected(corpus["project"])
    records = rejected[rejected["source"] != "contact"]
    keys = zip(records["source"], records["location"], strict=True)
    found = dict(zip(keys, records["reason"], strict=True))
    assert found == corpus["records"]
    assert (records["detail"].str.len() > 20).all()


def test_every_id_lands_in_its_place(corpus):
    project = corpus["project"]
    contacts = pd.read_parquet(project / outputs() / "03_primary/contacts.parquet")
    rejected = _rejected(project)
    verdicts = rejected[rejected["source"] == "contact"].set_index("id")["reason"]
    outcome = {
        **{
            i: ("unlabeled" if s == "unlabeled" else "kept")
            for i, s in zip(contacts["id"], contacts["split"], strict=True)
        },
        **verdicts.to_dict(),
    }
    assert {i: outcome.get(i) for i in corpus["ids"]} == corpus["ids"]
    assert set(outcome) == set(corpus["ids"])  # no id appeared from nowhere


def test_accounting_adds_up_on_the_corpus(corpus):
    summary = _summary(corpus["project"])
    assert summary["raw_ids"] == len(corpus["ids"]) == sum(summary["outcome"].values())
    assert sum(summary["rejected_ids"].values()) == summary["outcome"]["rejected"]
    raw = corpus["project"] / "data/01_raw"
    n_files = sum(1 for p in (raw / "audio").rglob("*") if not p.is_dir())
    label_rows = len((raw / "labels.csv").read_bytes().splitlines()) - 1
    totals = {"raw_texts": 24 + 19, "raw_labels": label_rows, "raw_audio": n_files}
    for source, total in totals.items():
        counts = summary["records"][source]
        assert counts["total"] == total, source
        assert counts["accepted"] + sum(counts["rejected"].values()) == total, source
    expected = pd.Series(corpus["records"]).groupby(level=0).value_counts()
    for (source, reason), n in expected.items():
        assert summary["records"][source]["rejected"][reason] == n, (source, reason)


def test_clips_out_of_bounds_are_never_decoded(corpus):
    opened = corpus["opened"]
    assert LONG_CLIP in opened["info"]  # its header was read ...
    assert LONG_CLIP not in opened["blocks"] + opened["load"]  # ... nothing more
    assert len(set(opened["blocks"] + opened["load"])) > 5  # the spies see decodes
    everything = opened["info"] + opened["blocks"] + opened["load"]
    assert "a_link_out.wav" not in everything and "secret.wav" not in everything


def test_kept_clips_are_prepared_and_saved(corpus):
    folder = corpus["project"] / outputs() / "02_intermediate/audio"
    saved = {p.stem: sf.info(p) for p in folder.glob("*.flac")}
    index = pd.read_parquet(
        corpus["project"] / outputs() / "02_intermediate/audio_index.parquet"
    )
    assert set(saved) == set(index["id"])
    assert {(i.samplerate, i.channels) for i in saved.values()} == {(16000, 1)}
    formats = index.set_index("id")["format"]
    assert formats["a_u8"] == "WAV/PCM_U8" and formats["a_s24"] == "WAV/PCM_24"
    assert index.set_index("id").loc["a_clipped_mild", "clipped_share"] > 0.05
    assert not list(folder.glob(".saving*"))


def test_texts_are_decoded_cleaned_and_masked(corpus):
    contacts = pd.read_parquet(
        corpus["project"] / outputs() / "03_primary/contacts.parquet"
    ).set_index("id")
    assert contacts.loc["t_cp1252", "text"] == "café crème €5"
    assert contacts.loc["t_newline", "text"] == 'two lines with "quotes", and a comma'
    assert contacts.loc["t_pii", "text"] == "call me on [PHONE] card [CARD] or [EMAIL]"
    assert contacts.loc["t_long", "text"] == "" and contacts.loc["t_long", "has_audio"]


def test_no_pii_in_outputs_details_or_logs(corpus):
    project = corpus["project"]
    assert scan_for(PII, project / "data", exclude=[project / "data/01_raw"]) == []
    assert not [p for p in PII if p in corpus["log"]]
    details = " ".join(_rejected(project)["detail"])
    assert "word word" not in details and "version" not in details


def test_logs_summarise_the_rejections(corpus):
    assert "raw_audio: 15 of 46 records rejected" in corpus["log"]
    assert "see the 'rejected' dataset" in corpus["log"]


def _write_clips(folder: Path, n: int) -> dict:
    folder.mkdir(parents=True)
    t = np.arange(16000 * 4) / 48000
    for i in range(n):
        wave = np.stack([np.sin(2 * np.pi * (200 + i) * t)] * 2, axis=1) * 0.3
        sf.write(folder / f"c{i:03d}.wav", wave.astype(np.float32), 48000)
    return AudioFolderDataset(path=str(folder)).load()


def _peak_memory(raw_audio: dict, out: Path) -> int:
    params = {"sample_rate": 16000, "top_db": 35, "target_dbfs": -20.0}
    tracemalloc.start()
    try:
        clips, _, _ = prepare_audio(raw_audio, params)
        AudioFolderDataset(path=str(out), filename_suffix=".flac").save(clips)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_clips(tmp_path):
    few = _peak_memory(_write_clips(tmp_path / "few", 4), tmp_path / "out_few")
    many = _peak_memory(_write_clips(tmp_path / "many", 40), tmp_path / "out_many")
    # 40 stereo 4-s clips at 48 kHz hold 61 MB as float32; one is 1.5 MB.
    assert many < few * 1.5 + 2_000_000, (few, many)
    assert len(list((tmp_path / "out_many").glob("*.flac"))) == 40
