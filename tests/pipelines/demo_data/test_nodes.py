"""Tests of the ``demo_data`` pipeline: determinism, counts, coverage, planted PII,
disjoint informative shares, missing rows and the synthesised clips."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from multimodal_fusion.datasets import AudioClip
from multimodal_fusion.pipelines.demo_data import create_pipeline
from multimodal_fusion.pipelines.demo_data.nodes import (
    make_demo_manifest,
    make_raw_labels,
    make_raw_texts,
    plan_contacts,
    synthesize_audio,
)

PARAMETERS_FILE = Path(__file__).parents[3] / "conf/base/parameters_demo_data.yml"
OUTPUTS = {"raw_texts", "raw_audio", "raw_labels", "demo_manifest"}
INCOMING = {"incoming_texts", "incoming_audio", "incoming_labels", "incoming_manifest"}


@pytest.fixture(scope="module")
def base_params() -> dict[str, Any]:
    return yaml.safe_load(PARAMETERS_FILE.read_text())["demo_data"]


@pytest.fixture
def small_params(base_params) -> dict[str, Any]:
    params = copy.deepcopy(base_params)
    params.update(n_contacts=40, n_speakers=6)
    return params


@pytest.fixture(scope="module")
def full_plan(base_params) -> pd.DataFrame:
    """The plan of the configured dataset (2,000 contacts): cheap, no audio."""
    return plan_contacts(42, base_params)


@pytest.fixture(scope="module")
def small_audio(base_params):
    pytest.importorskip("espeakng_loader")
    params = copy.deepcopy(base_params)
    params.update(n_contacts=40, n_speakers=6)
    plan = plan_contacts(7, params)
    return plan, params, synthesize_audio(plan, params)


def _luhn_valid(number: str) -> bool:
    digits = [int(char) for char in reversed(number)]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return total % 10 == 0


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


def test_plan_is_deterministic(small_params):
    first = plan_contacts(42, small_params)
    second = plan_contacts(42, small_params)
    pd.testing.assert_frame_equal(first, second)
    other = plan_contacts(43, small_params)
    assert not first["typed_text"].equals(other["typed_text"])


def test_plan_has_one_row_per_contact_with_formatted_ids(full_plan, base_params):
    assert len(full_plan) == base_params["n_contacts"]
    assert full_plan["id"].is_unique
    assert full_plan["id"].str.fullmatch(r"c\d{5}").all()
    assert full_plan["speaker"].str.fullmatch(r"spk\d{3}").all()
    assert 40 <= full_plan["speaker"].nunique() <= base_params["n_speakers"]


def test_intents_are_balanced_and_spread_over_speakers(full_plan, base_params):
    counts = full_plan["label"].value_counts()
    assert set(counts.index) == set(base_params["intents"])
    assert len(counts) >= 10
    assert counts.max() - counts.min() <= 1
    intents_per_speaker = full_plan.groupby("speaker")["label"].nunique()
    assert intents_per_speaker.min() >= 6


def test_each_speaker_keeps_one_voice(full_plan):
    spoken = full_plan[full_plan["has_audio"]]
    assert (spoken.groupby("speaker")["voice"].nunique() == 1).all()
    assert spoken["voice"].nunique() > 10
    assert spoken["rate"].between(80, 450).all()
    assert spoken["pitch"].between(0, 99).all()


def test_pii_is_planted_in_typed_texts(full_plan, base_params):
    typed = full_plan[full_plan["has_text"]]
    with_pii = typed[typed["planted_pii"] != ""]
    share = len(with_pii) / len(typed)
    assert abs(share - base_params["shares"]["pii"]) < 0.05
    values = [value for row in with_pii["planted_pii"] for value in row.split("|")]
    for _, row in with_pii.iterrows():
        for value in row["planted_pii"].split("|"):
            assert value in row["typed_text"]
    emails = [v for v in values if "@" in v]
    cards = [
        re.sub(r"[ -]", "", v) for v in values if re.fullmatch(r"[\d -]{16,19}", v)
    ]
    phones = [
        v for v in values if v not in emails and re.sub(r"[ -]", "", v) not in cards
    ]
    assert emails and cards and phones
    assert all(re.fullmatch(r"[\w.]+@[\w.]+\.\w+", email) for email in emails)
    assert all(len(card) == 16 and _luhn_valid(card) for card in cards)
    assert (full_plan.loc[~full_plan["has_text"], "planted_pii"] == "").all()


def test_typed_and_spoken_messages_use_different_wording(full_plan):
    both = full_plan[full_plan["has_text"] & full_plan["has_audio"]]
    assert (both["typed_text"] != both["spoken_text"]).all()
    typed = {_normalise(text) for text in both["typed_text"]}
    spoken = {_normalise(text) for text in both["spoken_text"]}
    assert not typed & spoken
    assert both["typed_text"].nunique() > 1000  # slot fills and noise: varied texts


def test_typed_texts_carry_typing_noise(full_plan):
    typed = full_plan.loc[full_plan["has_text"], "typed_text"]
    assert typed.str.contains(r"\b(?:pls|plz|u|acct|thx|msg)\b").mean() > 0.05
    assert (typed == typed.str.lower()).mean() > 0.2


def test_uninformative_shares_are_disjoint(full_plan, base_params):
    shares = base_params["shares"]
    both = full_plan[full_plan["has_text"] & full_plan["has_audio"]]
    assert (both["text_informative"] | both["audio_informative"]).all()
    assert abs((~both["text_informative"]).mean() - shares["text_uninformative"]) < 0.04
    assert (
        abs((~both["audio_informative"]).mean() - shares["audio_uninformative"]) < 0.04
    )
    assert set(both["audio_kind"]) == {"informative", "drowned", "vague"}
    drowned = both[both["audio_kind"] == "drowned"]
    assert (drowned["snr_db"] < 0).all()
    assert (both.loc[both["audio_kind"] != "drowned", "snr_db"] >= 5).all()
    assert (~full_plan.loc[~full_plan["has_text"], "audio_informative"]).sum() == 0


def test_raw_outputs_follow_the_contract_and_leave_rows_out(full_plan):
    raw_texts = make_raw_texts(full_plan)
    raw_labels = make_raw_labels(full_plan)
    manifest = make_demo_manifest(full_plan)

    assert list(raw_texts.columns) == ["id", "text"]
    assert list(raw_labels.columns) == ["id", "label", "speaker"]
    assert (raw_texts["text"].str.len() > 0).all()
    assert set(raw_texts["id"]) == set(full_plan.loc[full_plan["has_text"], "id"])
    assert set(raw_labels["id"]) == set(full_plan.loc[full_plan["has_label"], "id"])
    for column in ("has_text", "has_audio", "has_label"):
        assert 0 < (~full_plan[column]).sum() < 0.05 * len(full_plan)
    unlabeled = manifest[~manifest["has_label"]]
    assert (unlabeled["speaker"] != "").all()
    assert not set(unlabeled["id"]) & set(raw_labels["id"])

    assert list(manifest.columns[:15]) == [
        "id", "label", "speaker", "typed_text", "spoken_text", "voice", "rate",
        "pitch", "snr_db", "text_informative", "audio_informative", "has_text",
        "has_audio", "has_label", "planted_pii",
    ]  # fmt: skip
    assert len(manifest) == len(full_plan)


def test_invalid_parameters_are_rejected(small_params):
    overlapping = copy.deepcopy(small_params)
    overlapping["shares"].update(text_uninformative=0.6, audio_uninformative=0.6)
    with pytest.raises(ValueError, match="disjoint"):
        plan_contacts(0, overlapping)
    unknown = copy.deepcopy(small_params)
    unknown["intents"] = ["card_lost", "order_pizza"]
    with pytest.raises(ValueError, match="order_pizza"):
        plan_contacts(0, unknown)


def test_synthesized_clips_are_audible_and_sized(small_audio):
    plan, params, clips = small_audio
    expected = {f"{cid}.flac" for cid in plan.loc[plan["has_audio"], "id"]}
    assert set(clips) == expected
    for clip in clips.values():
        assert isinstance(clip, AudioClip)
        assert clip.waveform.dtype == np.float32
        assert clip.waveform.ndim == 1
        assert clip.sample_rate == params["audio"]["sample_rate"]
        assert params["audio"]["min_duration_s"] <= clip.duration <= 6.0
        assert np.sqrt(np.mean(clip.waveform**2)) > 0.01
        assert np.max(np.abs(clip.waveform)) <= 1.0


def test_synthesized_clips_are_deterministic(small_audio):
    plan, params, clips = small_audio
    again = synthesize_audio(plan, params)
    assert set(again) == set(clips)
    for key, clip in clips.items():
        np.testing.assert_array_equal(again[key].waveform, clip.waveform)


def test_pipeline_produces_the_raw_datasets_and_a_batch_of_new_contacts(small_params):
    pytest.importorskip("espeakng_loader")
    pipeline = create_pipeline()
    batch_params = {
        **small_params,
        "n_contacts": 30,
        "id_prefix": "n",
        "defects": {"corrupt_clips": 1, "empty_texts": 1},
    }
    assert pipeline.outputs() == OUTPUTS | INCOMING
    assert pipeline.inputs() == {
        "params:seed",
        "params:demo_data",
        "params:demo_incoming.seed",
        "params:demo_incoming.demo_data",
    }

    catalog = DataCatalog(
        datasets={
            "params:seed": MemoryDataset(42),
            "params:demo_data": MemoryDataset(small_params),
            "params:demo_incoming.seed": MemoryDataset(7),
            "params:demo_incoming.demo_data": MemoryDataset(batch_params),
            **{name: MemoryDataset() for name in OUTPUTS | INCOMING},
        }
    )
    SequentialRunner().run(pipeline, catalog)

    manifest = catalog.load("demo_manifest")
    assert len(manifest) == small_params["n_contacts"]
    assert len(catalog.load("raw_texts")) == manifest["has_text"].sum()
    assert len(catalog.load("raw_labels")) == manifest["has_label"].sum()
    assert len(catalog.load("raw_audio")) == manifest["has_audio"].sum()
    assert (manifest["defect"] == "").all()

    batch = catalog.load("incoming_manifest").set_index("id")
    assert len(batch) == 30 and batch.index.str.fullmatch(r"n\d{5}").all()
    defects = batch[batch["defect"] != ""]["defect"]
    assert sorted(defects) == ["corrupt_clip", "empty_text"]
    clips = catalog.load("incoming_audio")
    texts = catalog.load("incoming_texts").set_index("id")["text"]
    (corrupt,) = defects.index[defects == "corrupt_clip"]
    (empty,) = defects.index[defects == "empty_text"]
    assert isinstance(clips[f"{corrupt}.flac"], bytes)  # a file cut short
    assert batch.loc[corrupt, "text_informative"]  # its text carries the intent
    assert texts[empty] == "" and isinstance(clips[f"{empty}.flac"], AudioClip)
    assert batch.loc[empty, "audio_informative"]


def test_planted_defects_leave_the_rest_of_the_plan_unchanged(small_params):
    plain = plan_contacts(3, small_params)
    damaged = plan_contacts(
        3, {**small_params, "defects": {"corrupt_clips": 2, "empty_texts": 2}}
    )
    assert (damaged["defect"] != "").sum() == 4
    pd.testing.assert_frame_equal(
        plain.drop(columns="defect"), damaged.drop(columns="defect")
    )
