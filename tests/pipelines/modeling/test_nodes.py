import pickle

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from multimodal_fusion.alignment import CCAAlignment, retrieval_recall
from multimodal_fusion.fusion import FusionClassifier
from multimodal_fusion.pipelines.modeling.nodes import (
    align_inputs,
    build_model_inputs,
    evaluate_alignment,
    evaluate_classifier,
    fit_alignment,
    train_classifier,
)

MLP = {
    "branch_units": 32,
    "branch_dropout": 0.1,
    "fusion_units": 16,
    "fusion_dropout": 0.1,
    "learning_rate": 0.01,
    "batch_size": 32,
    "epochs": 40,
    "patience": 5,
}


def _problem(n=240, seed=0):
    """Text knows the class for rows 0-2 mod 4 only; audio for rows 1-3 mod 4."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    text = np.zeros((n, 6), np.float32)
    audio = rng.normal(0, 0.3, (n, 4)).astype(np.float32)
    text_informative = np.arange(n) % 4 != 3
    audio_informative = np.arange(n) % 4 != 0
    text[text_informative, y[text_informative]] = 1.0
    text[~text_informative, 5] = 1.0
    audio[audio_informative, y[audio_informative]] += 2.0
    contacts = pd.DataFrame(
        {
            "id": [f"c{i:03d}" for i in range(n)],
            "label": np.array(["a", "b", "c"])[y],
            "split": np.array(["train", "train", "train", "val", "test"])[
                np.arange(n) % 5
            ],
            "has_text": True,
            "has_audio": True,
        }
    )
    text_features = {
        "ids": contacts["id"].to_numpy(),
        "tfidf": sparse.csr_matrix(text),
        "present": np.ones(n, bool),
    }
    audio_features = {
        "ids": contacts["id"].to_numpy(),
        "pooled": audio,
        "frames": np.zeros((n, 0, 4), np.float32),
        "present": np.ones(n, bool),
    }
    return build_model_inputs(contacts, text_features, audio_features)


def test_model_inputs_follow_the_splits():
    inputs = _problem()
    assert [len(inputs[s]["y"]) for s in ("train", "val", "test")] == [144, 48, 48]
    assert sparse.issparse(inputs["train"]["inputs"]["text"])
    assert inputs["test"]["inputs"]["audio"].shape == (48, 4)


def test_misaligned_features_are_refused():
    inputs = _problem(n=20)
    contacts = pd.DataFrame({"id": ["x"], "label": ["a"], "split": ["train"]})
    features = {"ids": np.array(["y"]), "tfidf": None, "pooled": None, "present": None}
    with pytest.raises(ValueError, match="not aligned"):
        build_model_inputs(contacts, features, features)
    assert inputs


def test_fusion_beats_each_modality_when_each_misses_some_rows():
    inputs = _problem()
    scores = {}
    for name, modalities in [
        ("text", ["text"]),
        ("audio", ["audio"]),
        ("fusion", ["text", "audio"]),
    ]:
        model = train_classifier(inputs, {**MLP, "modalities": modalities}, seed=0)
        metrics, predictions = evaluate_classifier(model, inputs)
        scores[name] = metrics["macro_f1"]
        assert metrics["modalities"] == modalities
        assert metrics["split_sizes"] == {"train": 144, "val": 48, "test": 48}
        assert len(predictions) == 48
    assert scores["fusion"] > max(scores["text"], scores["audio"]) + 0.05


def test_training_is_deterministic_and_survives_pickling():
    inputs = _problem(n=120)
    params = {**MLP, "modalities": ["text", "audio"], "epochs": 5}
    first = train_classifier(inputs, params, seed=7)
    second = train_classifier(inputs, params, seed=7)
    test = inputs["test"]["inputs"]
    np.testing.assert_array_equal(first.predict_proba(test), second.predict_proba(test))
    restored = pickle.loads(pickle.dumps(first))
    np.testing.assert_allclose(restored.predict_proba(test), first.predict_proba(test))


def test_variant_without_data_for_a_modality_is_skipped_with_a_reason():
    inputs = _problem(n=60)
    for split in inputs.values():
        split["inputs"]["text"] = sparse.csr_matrix(
            (len(split["y"]), 0), dtype=np.float32
        )
    model = FusionClassifier(modalities=["text", "audio"]).fit(
        inputs["train"]["inputs"],
        inputs["train"]["y"],
        validation=(inputs["val"]["inputs"], inputs["val"]["y"]),
    )
    assert model.skipped_reason_ == "no text features to train on"
    metrics, predictions = evaluate_classifier(model, inputs)
    assert metrics["status"] == "skipped" and metrics["macro_f1"] is None
    assert predictions.empty
    with pytest.raises(RuntimeError, match="not trained"):
        model.predict(inputs["test"]["inputs"])


def test_retrieval_recall_against_the_random_baseline():
    items = np.eye(10)
    result = retrieval_recall(items, items, [1, 5])
    assert result["recall@1"] == {"model": 1.0, "random": 0.1}
    shuffled = retrieval_recall(items, np.roll(items, 1, axis=0), [1])
    assert shuffled["recall@1"]["model"] == 0.0


def test_label_match_counts_same_label_retrievals():
    labels = ["a", "a", "b", "b"]
    queries = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], float)
    items = np.array([[1, 0.1], [1, 0.2], [0.1, 1], [0.2, 1]])
    scores = retrieval_recall(queries, items, [1], labels)
    assert scores["label_match@1"] == {"model": 1.0, "random": 0.5}


def test_cca_alignment_retrieves_pairs_far_above_chance():
    """Text and audio are two noisy linear views of one latent vector per row."""
    rng = np.random.default_rng(1)
    latent = rng.normal(size=(400, 3))
    text = latent @ rng.normal(size=(3, 8)) + 0.3 * rng.normal(size=(400, 8))
    audio = latent @ rng.normal(size=(3, 6)) + 0.3 * rng.normal(size=(400, 6))
    inputs = _problem(n=400)
    for split, rows in (("train", slice(0, 300)), ("test", slice(300, 400))):
        inputs[split]["inputs"] = {
            "text": sparse.csr_matrix(text[rows]),
            "audio": audio[rows].astype(np.float32),
        }
        inputs[split]["y"] = np.where(latent[rows, 0] > 0, "a", "b")
        inputs[split]["has"] = {
            "text": np.ones(100 if split == "test" else 300, bool),
            "audio": np.ones(100 if split == "test" else 300, bool),
        }
    inputs["val"] = inputs["test"]
    alignment = fit_alignment(
        inputs, {"n_components": 3, "text_components": 6, "audio_components": 5}, seed=0
    )
    aligned = align_inputs(inputs, alignment)
    assert aligned["test"]["inputs"]["text"].shape == (100, 3)
    metrics = evaluate_alignment(aligned, alignment, [1, 5])
    for direction in ("text_to_audio", "audio_to_text"):
        recall = metrics[direction]["recall@5"]
        assert recall["model"] > 5 * recall["random"]
        label_match = metrics[direction]["label_match@1"]
        assert label_match["model"] > label_match["random"] + 0.2


def test_cca_alignment_without_pairs_learns_nothing():
    alignment = CCAAlignment().fit(np.zeros((0, 5)), np.zeros((0, 3)))
    assert alignment.n_components_ == 0
    text_z, audio_z = alignment.transform(np.ones((4, 5)), np.ones((4, 3)))
    assert text_z.shape == audio_z.shape == (4, 0)


def test_audio_frames_encoder_finds_evidence_anywhere_in_the_clip():
    """The class is a short burst in one mel band at a random time; pooled
    statistics are noise, so only the frame encoder can see it."""
    rng = np.random.default_rng(3)
    inputs = _problem(n=240)
    for part in inputs.values():
        n = len(part["y"])
        frames = rng.normal(0, 0.3, (n, 32, 6)).astype(np.float32)
        band = np.searchsorted(["a", "b", "c"], part["y"])
        start = rng.integers(0, 28, n)
        for row in range(n):
            frames[row, start[row] : start[row] + 4, band[row]] += 3.0
        part["inputs"]["audio_frames"] = frames
        part["inputs"]["audio"] = rng.normal(size=(n, 4)).astype(np.float32)
    scores = {}
    for use_frames in (True, False):
        params = {
            **MLP,
            "modalities": ["audio"],
            "audio_frames": use_frames,
            "conv_channels": [16],
            "conv_kernel": 3,
        }
        model = train_classifier(inputs, params, seed=0)
        assert ("audio_frames" in model.input_names_) is use_frames
        scores[use_frames] = evaluate_classifier(model, inputs)[0]["macro_f1"]
    assert scores[True] > 0.9
    assert scores[False] < 0.6
