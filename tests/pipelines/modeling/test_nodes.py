import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from multimodal_fusion.alignment import (
    CCAAlignment,
    ContrastiveAlignment,
    align_inputs,
    retrieval_recall,
)
from multimodal_fusion.datasets import AudioClip
from multimodal_fusion.errors import UserInputError
from multimodal_fusion.fusion import (
    FusionClassifier,
    LateFusionClassifier,
    blank_modality,
)
from multimodal_fusion.pipelines.evaluation.nodes import (
    evaluate_alignment,
    evaluate_classifier,
    perturb_test_split,
)
from multimodal_fusion.pipelines.feature_extraction.nodes import (
    extract_audio_features,
    featurize_texts,
    fit_audio_standardizer,
    fit_text_featurizer,
    fit_token_vocabulary,
    gather_chunks,
    make_feature_path,
    standardize_audio_features,
    tokenize_texts,
)
from multimodal_fusion.pipelines.modeling.nodes import (
    augment_training_split,
    build_model_inputs,
    fit_alignment,
)
from multimodal_fusion.training import (
    combine_trained_models,
    combine_trained_seeds,
    seed_series,
    train_classifier,
    train_seeds,
)

MLP = {
    "branch_units": 32,
    "branch_dropout": 0.1,
    "fusion_units": 16,
    "fusion_dropout": 0.1,
    "learning_rate": 0.01,
    "batch_size": 32,
    "epochs": 30,
    "patience": 4,
    "conv_channels": [16],
    "conv_kernel": 3,
    "attention_dim": 16,
    "attention_heads": 2,
}
CLASSES = np.array(["a", "b", "c"])


def _problem(n=240, seed=0):
    """Text knows the class for rows 0-2 mod 4 only; audio for rows 1-3 mod 4.

    Each modality has a vector (TF-IDF-like text, pooled audio) and a sequence
    (token ids with a class keyword at a random place; frames with a burst in a
    class band at a random time).
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    text_informative = np.arange(n) % 4 != 3
    audio_informative = np.arange(n) % 4 != 0
    text = np.zeros((n, 6), np.float32)
    text[text_informative, y[text_informative]] = 1.0
    text[~text_informative, 5] = 1.0
    tokens = rng.integers(5, 9, (n, 6)).astype(np.int32)
    where = rng.integers(0, 6, n)
    tokens[text_informative, where[text_informative]] = 2 + y[text_informative]
    audio = rng.normal(0, 0.3, (n, 4)).astype(np.float32)
    audio[audio_informative, y[audio_informative]] += 2.0
    frames = rng.normal(0, 0.3, (n, 16, 4)).astype(np.float32)
    start = rng.integers(0, 12, n)
    for row in np.flatnonzero(audio_informative):
        frames[row, start[row] : start[row] + 4, y[row]] += 3.0
    contacts = pd.DataFrame(
        {
            "id": [f"c{i:03d}" for i in range(n)],
            "label": CLASSES[y],
            "split": np.array(["train", "train", "train", "val", "test"])[
                np.arange(n) % 5
            ],
            "has_text": True,
            "has_audio": True,
        }
    )
    ids, present = contacts["id"].to_numpy(), np.ones(n, bool)
    return build_model_inputs(
        contacts,
        {"ids": ids, "tfidf": sparse.csr_matrix(text), "present": present},
        {"ids": ids, "tokens": tokens, "present": present},
        {"ids": ids, "pooled": audio, "frames": frames, "present": present},
    )


def test_model_inputs_follow_the_splits():
    inputs = _problem()
    assert [len(inputs[s]["y"]) for s in ("train", "val", "test")] == [144, 48, 48]
    assert "train_augmented" not in inputs
    test = inputs["test"]["inputs"]
    assert sparse.issparse(inputs["train"]["inputs"]["text"])
    assert test["audio"].shape == (48, 4)
    assert test["text_tokens"].shape == (48, 6)
    assert test["audio_frames"].shape == (48, 16, 4)


def test_misaligned_features_are_refused():
    contacts = pd.DataFrame({"id": ["x"], "label": ["a"], "split": ["train"]})
    features = {"ids": np.array(["y"]), "tfidf": None, "pooled": None, "present": None}
    with pytest.raises(ValueError, match="text_features rows are not aligned"):
        build_model_inputs(contacts, features, features, features)


def test_fusion_beats_each_modality_when_each_misses_some_rows():
    inputs = _problem()
    scores = {}
    for name, modalities in [
        ("text", ["text"]),
        ("audio", ["audio"]),
        ("fusion", ["text", "audio"]),
    ]:
        params = {**MLP, "modalities": modalities, "audio_frames": False}
        model = train_classifier(inputs, params, seed=0)
        metrics, predictions = evaluate_classifier(model, inputs)
        scores[name] = metrics["macro_f1"]
        assert metrics["modalities"] == modalities
        assert metrics["split_sizes"] == {"train": 144, "val": 48, "test": 48}
        assert metrics["train_rows"] == 144
        assert ("blanked" in metrics) is (name == "fusion")
        assert len(predictions) == 48
    assert scores["fusion"] > max(scores["text"], scores["audio"]) + 0.05


@pytest.mark.parametrize(
    "fusion",
    [
        {"fusion": "gated", "audio_frames": False},
        {"fusion": "attention"},
        {"fusion": "late", "audio_frames": False},
    ],
    ids=["gated", "attention", "late"],
)
def test_fusion_variants_answer_rows_that_have_one_modality(fusion):
    inputs = _problem()
    params = {**MLP, **fusion, "modalities": ["text", "audio"]}
    if fusion["fusion"] != "late":
        params["modality_dropout"] = 0.4
    model = train_classifier(inputs, params, seed=0)
    metrics, predictions = evaluate_classifier(model, inputs)

    assert metrics["status"] == "trained"
    assert metrics["macro_f1"] > 0.9
    # Blanking a modality everywhere leaves the other one's evidence: each
    # modality alone knows 3 rows in 4 (about 0.8 macro-F1; chance is 0.33).
    for modality in ("text", "audio"):
        assert metrics["blanked"][modality]["macro_f1"] > 0.65, modality
    assert len(predictions) == 48 and predictions["predicted"].notna().all()

    # A mix of rows with text only, audio only and both is answered row by row.
    test = inputs["test"]
    rows = np.arange(48)
    mixed = blank_modality(test["inputs"], "audio", rows % 3 == 0)
    mixed = blank_modality(mixed, "text", rows % 3 == 1)
    predicted = model.predict(mixed)
    assert len(predicted) == 48
    assert np.mean(predicted == test["y"]) > 0.7


def test_evaluation_reports_rows_by_available_modalities():
    inputs = _problem(n=120)
    test = inputs["test"]
    test["has"]["audio"][:5] = False
    test["inputs"] = blank_modality(test["inputs"], "audio", ~test["has"]["audio"])
    params = {**MLP, "modalities": ["text", "audio"], "epochs": 3}
    metrics, predictions = evaluate_classifier(
        train_classifier(inputs, params, seed=0), inputs
    )
    groups = metrics["by_available_modalities"]
    assert groups["text_only"]["n"] == 5
    assert groups["text_and_audio"]["n"] == 19
    assert groups["audio_only"] == {"n": 0, "accuracy": None}
    assert predictions["has_audio"].sum() == 19 and len(predictions) == 24


def test_training_is_deterministic_and_survives_pickling():
    inputs = _problem(n=120)
    params = {**MLP, "modalities": ["text", "audio"], "epochs": 5}
    first = train_classifier(inputs, params, seed=7)
    second = train_classifier(inputs, params, seed=7)
    test = inputs["test"]["inputs"]
    np.testing.assert_array_equal(first.predict_proba(test), second.predict_proba(test))
    restored = pickle.loads(pickle.dumps(first))
    np.testing.assert_allclose(restored.predict_proba(test), first.predict_proba(test))


def test_robust_models_unpickle_in_a_fresh_process(tmp_path):
    """Custom layers (modality dropout, SpecAugment, gates, attention) and the
    adversarial training step load again without importing them first."""
    inputs = _problem(n=40)
    params = {
        **MLP,
        "modalities": ["text", "audio"],
        "fusion": "attention",
        "epochs": 1,
        "modality_dropout": 0.3,
        "spec_augment": {"time_masks": 1, "freq_masks": 1},
        "adversarial": {"method": "fgsm", "epsilon": 0.05},
    }
    model = train_classifier(inputs, params, seed=1)
    test = inputs["test"]["inputs"]
    path, expected = tmp_path / "model.pkl", tmp_path / "expected.npy"
    path.write_bytes(pickle.dumps((model, test)))
    np.save(expected, model.predict_proba(test))
    script = (
        "import pickle, sys, numpy as np\n"
        f"model, test = pickle.loads(open({str(path)!r}, 'rb').read())\n"
        f"np.testing.assert_allclose(model.predict_proba(test), "
        f"np.load({str(expected)!r}), atol=1e-6)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


@pytest.mark.parametrize(
    "adversarial",
    [
        {"method": "fgsm", "perturb": "embeddings", "epsilon": 0.1},
        {"method": "pgd", "perturb": "inputs", "epsilon": 0.1, "steps": 3},
    ],
    ids=["fgsm-embeddings", "pgd-inputs"],
)
def test_adversarial_examples_raise_the_loss_within_the_budget(adversarial):
    import tensorflow as tf

    inputs = _problem(n=120)
    params = {**MLP, "modalities": ["text", "audio"], "audio_frames": False}
    params = {**params, "epochs": 4, "adversarial": adversarial}
    model = train_classifier(inputs, params, 0)
    assert model.epochs_ >= 1
    network = model.model_
    x = {k: tf.constant(v) for k, v in model._select(inputs["val"]["inputs"]).items()}
    y = tf.constant(model._encode(inputs["val"]["y"]))
    if adversarial["perturb"] == "embeddings":
        encoded = network.encoder(x)
        targets = {k: encoded[k] for k in ("text", "audio")}

        def forward(values):
            return network.head({**encoded, **values})

    else:
        targets = {"audio": x["audio"]}

        def forward(values):
            return network({**x, **values})

    delta = network._attack(targets, y, forward)
    for name, target in targets.items():
        ratio = np.linalg.norm(delta[name], axis=-1) / np.linalg.norm(target, axis=-1)
        assert ratio.max() <= 0.1 + 1e-4, name
    clean = network.compute_loss(y=y, y_pred=forward(targets))
    attacked = network.compute_loss(
        y=y, y_pred=forward({k: targets[k] + delta[k] for k in targets})
    )
    assert float(attacked) > float(clean)


def test_invalid_adversarial_settings_are_refused():
    inputs = _problem(n=60)
    params = {**MLP, "modalities": ["text"], "epochs": 1}
    with pytest.raises(ValueError, match=r"adversarial\.method"):
        train_classifier(inputs, {**params, "adversarial": {"method": "x"}}, 0)
    # YAML 1.1 reads an unquoted `on:` key as True: refused, not ignored.
    yaml_on = {"method": "fgsm", True: "inputs", "epsilon": 0.1}
    with pytest.raises(ValueError, match=r"unknown keys \['True'\]"):
        train_classifier(inputs, {**params, "adversarial": yaml_on}, 0)
    with pytest.raises(ValueError, match=r"fusion must be one of"):
        train_classifier(inputs, {**params, "fusion": "sum"}, 0)


def test_late_fusion_learns_to_ignore_a_useless_modality():
    # The weights are fit on the validation rows: 48 (n=240) left the audio
    # weight to the batch order (one seed in three failed).
    inputs = _problem(n=480)
    for part in inputs.values():  # audio becomes pure noise
        rng = np.random.default_rng(len(part["y"]))
        part["inputs"]["audio"] = rng.normal(size=part["inputs"]["audio"].shape)
    params = {**MLP, "fusion": "late", "modalities": ["text", "audio"]}
    model = train_classifier(inputs, {**params, "audio_frames": False}, seed=0)
    assert isinstance(model, LateFusionClassifier)
    assert model.weights_["audio"] < 0.3 * model.weights_["text"]


def test_late_fusion_of_trained_unimodal_models_equals_training_its_own():
    # modeling combines text_only and audio_only instead of training the same
    # networks again: the result must be the late fusion that trains them.
    inputs = _problem(n=240)
    params = {**MLP, "audio_frames": False, "epochs": 3}
    own = train_classifier(
        inputs, {**params, "fusion": "late", "modalities": ["text", "audio"]}, seed=0
    )
    text = train_classifier(inputs, {**params, "modalities": ["text"]}, seed=0)
    audio = train_classifier(inputs, {**params, "modalities": ["audio"]}, seed=0)
    combined = combine_trained_models(inputs, text, audio)
    assert isinstance(combined, LateFusionClassifier)
    assert combined.weights_ == pytest.approx(own.weights_, abs=1e-6)
    test = inputs["test"]["inputs"]
    np.testing.assert_allclose(
        combined.predict_proba(test), own.predict_proba(test), atol=1e-6
    )
    assert combined.epochs_ == own.epochs_ == text.epochs_ + audio.epochs_


def test_late_fusion_of_trained_models_is_skipped_with_a_skipped_member():
    # As when it trains its own: no fusion without both modalities (a fusion
    # "gain" of one model over itself would be reported otherwise).
    inputs = _problem(n=120)
    for part in inputs.values():  # no audio at all: audio_only is skipped
        for name, values in part["inputs"].items():
            if name.startswith("audio"):
                part["inputs"][name] = np.zeros_like(values)
    params = {**MLP, "audio_frames": False, "epochs": 2}
    text = train_classifier(inputs, {**params, "modalities": ["text"]}, seed=0)
    audio = train_classifier(inputs, {**params, "modalities": ["audio"]}, seed=0)
    own = train_classifier(
        inputs, {**params, "fusion": "late", "modalities": ["text", "audio"]}, seed=0
    )
    combined = combine_trained_models(inputs, text, audio)
    assert audio.skipped_reason_
    assert combined.skipped_reason_ == own.skipped_reason_ == audio.skipped_reason_
    assert combined.modalities_ == own.modalities_ == ["text"]


def test_each_seed_trains_the_variant_again_and_the_project_seed_gives_the_model():
    inputs = _problem(n=120)
    params = {**MLP, "audio_frames": False, "epochs": 3}
    test = inputs["test"]["inputs"]
    text, text_others = train_seeds(inputs, {**params, "modalities": ["text"]}, 5, 3)
    alone = train_classifier(inputs, {**params, "modalities": ["text"]}, seed=5)
    # The variant's model is the one a single seed gives, bit for bit.
    np.testing.assert_array_equal(text.predict_proba(test), alone.predict_proba(test))
    assert [m.seed for m in text_others] == [6, 7]
    assert not np.allclose(
        text_others[0].predict_proba(test), text.predict_proba(test)
    )  # another initialisation and shuffle
    assert train_seeds(inputs, {**params, "modalities": ["text"]}, 5)[1] == []

    # Late fusion combines the members seed by seed.
    audio, audio_others = train_seeds(inputs, {**params, "modalities": ["audio"]}, 5, 3)
    late, late_others = combine_trained_seeds(
        inputs, text, audio, text_others, audio_others
    )
    assert [m.members_["text"].seed for m in late_others] == [6, 7]
    assert all(
        m.members_["audio"] is a for m, a in zip(late_others, audio_others, strict=True)
    )
    expected = combine_trained_models(inputs, text_others[1], audio_others[1])
    np.testing.assert_allclose(
        late_others[1].predict_proba(test), expected.predict_proba(test), atol=1e-6
    )
    np.testing.assert_allclose(
        late.predict_proba(test),
        combine_trained_models(inputs, text, audio).predict_proba(test),
        atol=1e-6,
    )

    # Scored by evaluation: the spread holds each seed's test macro-F1.
    metrics, _ = evaluate_classifier(text, inputs, text_others)
    spread = metrics["seed_spread"]
    assert spread["seeds"] == [5, 6, 7]
    assert spread["macro_f1"][0] == metrics["macro_f1"]
    assert spread["mean"] == pytest.approx(np.mean(spread["macro_f1"]))
    assert spread["std"] == pytest.approx(np.std(spread["macro_f1"], ddof=1))
    assert evaluate_classifier(text, inputs)[0]["seed_spread"]["std"] is None


def test_a_skipped_variant_is_not_trained_again_for_other_seeds():
    inputs = _problem(n=60)
    for part in inputs.values():
        for name, values in part["inputs"].items():
            if name.startswith("audio"):
                part["inputs"][name] = np.zeros_like(values)
    model, others = train_seeds(
        inputs, {**MLP, "modalities": ["audio"], "epochs": 1}, 0, 3
    )
    assert model.skipped_reason_
    assert others == []


@pytest.mark.parametrize("seeds", [0, -1, 1.5, "3", True, None])
def test_a_bad_seed_count_names_the_parameter(seeds):
    with pytest.raises(UserInputError, match="modeling.seeds must be a whole number"):
        seed_series(42, seeds)


def test_augmented_rows_are_trained_on_when_asked():
    inputs = _problem(n=120)
    train = inputs["train"]
    inputs["train_augmented"] = {**train, "ids": train["ids"] + "#aug0"}
    params = {**MLP, "modalities": ["text"], "epochs": 2}
    plain = train_classifier(inputs, params, seed=0)
    augmented = train_classifier(inputs, {**params, "augment": True}, seed=0)
    assert plain.n_train_rows_ == 72
    assert augmented.n_train_rows_ == 144


AUDIO_FEATURES = {
    "n_fft": 256,
    "hop_length": 80,
    "n_mels": 20,
    "max_frames": 60,
    "n_mfcc": 10,
    "n_segments": 2,
    "n_jobs": 1,
    "batch_size": 4,
}
RATE = 8000


def _contacts_with_clips():
    contacts = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e", "f"],
            "text": ["my card is lost", "parcel late again", "", "x", "y", "refund"],
            "label": ["card", "parcel", "card", "card", "parcel", "refund"],
            "split": ["train", "train", "train", "val", "test", "train"],
            "has_text": [True, True, False, True, True, True],
            "has_audio": [True, True, True, True, True, False],
        }
    )
    t = np.arange(int(0.4 * RATE)) / RATE
    clips = {
        cid: AudioClip((0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), RATE)
        for cid, f in zip("abcde", (300, 500, 700, 900, 1100), strict=True)
    }
    return contacts, {cid: (lambda c=clip: c) for cid, clip in clips.items()}


def _feature_path(contacts, clips):
    """The feature_extraction nodes on ``contacts``: their feature path and
    standardised audio features."""
    featurizer = fit_text_featurizer(contacts, {"min_df": 1})
    vocabulary = fit_token_vocabulary(contacts, {"min_count": 1})
    raw = gather_chunks(extract_audio_features(contacts, clips, AUDIO_FEATURES, RATE))
    standardizer = fit_audio_standardizer(contacts, raw)
    audio = gather_chunks(standardize_audio_features(raw, standardizer))
    path = make_feature_path(
        featurizer, vocabulary, standardizer, audio, AUDIO_FEATURES, RATE
    )
    return path, audio


def test_augmented_training_split_perturbs_and_featurises_the_training_rows():
    contacts, clips = _contacts_with_clips()
    train = contacts[contacts["split"] == "train"]
    path, audio = _feature_path(contacts, clips)
    params = {
        "copies": 2,
        "text": {"typo_rate": 0.3, "word_dropout": 0.3},
        "audio": {
            "snr_db": [5, 10],
            "gain_db": None,
            "max_shift_s": 0.05,
            "speed": [0.9, 1.1],
        },
    }

    def augment(copies):
        return augment_training_split(
            contacts, clips, path, {**params, "copies": copies}, seed=0
        )

    augmented = augment(2)
    assert augmented["ids"].tolist() == [
        f"{cid}#aug{k}" for k in range(2) for cid in "abcf"
    ]
    assert augmented["y"].tolist() == train["label"].tolist() * 2
    assert augmented["has"]["audio"].tolist() == [True, True, True, False] * 2
    inputs = augmented["inputs"]
    assert inputs["text"].shape == (8, path.text_featurizer.n_features_)
    # Slowed-down copies are longer than any original: kept whole (the
    # networks take any length; stacking pads the originals to them).
    assert inputs["audio_frames"].shape[1] > audio["frames"].shape[1]
    assert inputs["audio_frames"].shape[2] == audio["frames"].shape[2]
    assert inputs["audio"].shape == (8, audio["pooled"].shape[1])
    # Perturbed, not copied: features differ from the originals' and per copy.
    originals = audio["pooled"][[0, 1, 2]]
    assert not np.allclose(inputs["audio"][[0, 1, 2]], originals)
    assert not np.allclose(inputs["audio"][[0, 1, 2]], inputs["audio"][[4, 5, 6]])
    assert not inputs["audio"][3].any() and not inputs["text"][2].nnz
    again = augment(2)["inputs"]  # reproducible
    for name, matrix in inputs.items():
        dense = matrix.toarray() if sparse.issparse(matrix) else matrix
        other = again[name].toarray() if sparse.issparse(matrix) else again[name]
        np.testing.assert_array_equal(dense, other)
    nothing = augment(0)
    assert len(nothing["y"]) == 0
    assert nothing["inputs"]["audio_frames"].shape[1:] == audio["frames"].shape[1:]


def _dense(matrix):
    return matrix.toarray() if sparse.issparse(matrix) else matrix


def test_perturbed_test_splits_change_only_the_perturbed_modality():
    contacts, clips = _contacts_with_clips()
    contacts = contacts.assign(
        split=["train", "train", "test", "train", "test", "test"],
        text=[
            "my card is lost",
            "parcel late again",
            "",
            "card lost again today",
            "where is my parcel today",
            "i want a refund for my card",
        ],
    )
    path, audio = _feature_path(contacts, clips)
    model_inputs = build_model_inputs(
        contacts,
        featurize_texts(contacts, path.text_featurizer),
        tokenize_texts(contacts, path.token_vocabulary),
        audio,
    )
    params = {
        "noise": ["white_noise", "babble_noise"],
        "snr_db": [10, -5],
        "text": ["typos", "word_omission"],
        "text_rates": [0.5],
        "missing": ["text_missing"],
        "missing_rates": [1.0],
    }

    def perturb():
        return perturb_test_split(contacts, clips, model_inputs, path, params, 0)

    sweep = perturb()
    clean = model_inputs["test"]
    assert sweep["clean"] is clean
    assert set(sweep) == {
        "clean",
        "white_noise@10",
        "white_noise@-5",
        "babble_noise@10",
        "babble_noise@-5",
        "typos@0.5",
        "word_omission@0.5",
    }
    # Test rows c (audio only), e (both), f (text only).
    test = contacts[contacts["split"] == "test"]
    again = path.audio_inputs(test, clips)
    # The same features as the pipeline's, in raw units (pure tones have
    # near-constant statistics whose float noise standardisation magnifies).
    std = path.audio_standardizer.pooled_std_
    np.testing.assert_allclose(
        again["audio"] * std, clean["inputs"]["audio"] * std, atol=1e-5
    )
    np.testing.assert_array_equal(again["present"], clean["has"]["audio"])

    def change(key, name):
        a, b = _dense(sweep[key]["inputs"][name]), _dense(clean["inputs"][name])
        return np.abs(a - b).reshape(len(a), -1).sum(axis=1)

    for kind in ("white_noise", "babble_noise"):
        assert (change(f"{kind}@10", "audio")[:2] > 0).all()
        mild = change(f"{kind}@10", "audio_frames")
        strong = change(f"{kind}@-5", "audio_frames")
        assert (mild[:2] > 0).all() and mild[2] == 0  # f has no clip
        assert (strong[:2] > mild[:2]).all()  # louder noise, further away
        assert not change(f"{kind}@-5", "text").any()
    for kind in ("typos", "word_omission"):
        assert change(f"{kind}@0.5", "text")[0] == 0  # c has no text
        assert (change(f"{kind}@0.5", "text")[1:] > 0).all()
        assert not change(f"{kind}@0.5", "audio").any()
        assert sweep[f"{kind}@0.5"]["has"] is clean["has"]
    for key, part in perturb().items():  # the same every time
        for name in part["inputs"]:
            np.testing.assert_array_equal(
                _dense(part["inputs"][name]), _dense(sweep[key]["inputs"][name])
            )


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
    late = train_classifier(
        inputs, {**MLP, "fusion": "late", "modalities": ["text", "audio"]}, 0
    )
    assert late.skipped_reason_ == "no text features to train on"


def test_aligned_variant_on_audio_only_data_is_skipped_for_lack_of_pairs():
    inputs = _problem(n=60)
    for split in inputs.values():  # an audio-only dataset: no text at all
        split["inputs"]["text"] = sparse.csr_matrix(
            (len(split["y"]), 0), dtype=np.float32
        )
        split["has"]["text"][:] = False
    alignment = fit_alignment(inputs, {"method": "cca", "n_components": 4}, seed=0)
    aligned = align_inputs(inputs, alignment)
    params = {**MLP, "modalities": ["text", "audio"]}
    for model in (
        train_classifier(aligned, params, 0),
        train_classifier(aligned, {**params, "fusion": "late"}, 0),
    ):
        assert "too few training rows with both text and audio" in (
            model.skipped_reason_
        )
    # The unaligned audio of the same data still trains.
    audio = train_classifier(inputs, {**MLP, "modalities": ["audio"]}, 0)
    assert audio.skipped_reason_ is None


def test_retrieval_recall_against_the_random_baseline():
    items = np.eye(10)
    result = retrieval_recall(items, items, [1, 5])
    assert result["recall@1"] == {"model": 1.0, "random": 0.1}
    shuffled = retrieval_recall(items, np.roll(items, 1, axis=0), [1])
    assert shuffled["recall@1"]["model"] == 0.0


def test_retrieval_counts_ties_at_their_worst_rank():
    # Four queries, all the same vector: every match ties with all four items.
    queries = np.ones((4, 3))
    items = np.ones((4, 3))
    result = retrieval_recall(queries, items, [1, 3, 4])
    assert result["recall@1"]["model"] == 0.0
    assert result["recall@3"]["model"] == 0.0
    assert result["recall@4"]["model"] == 1.0
    # Two repeated texts among distinct ones: only their pair is penalised.
    items = np.eye(5)
    queries = np.eye(5)
    queries[1] = queries[0]
    items[1] = items[0]
    assert retrieval_recall(queries, items, [1])["recall@1"]["model"] == 3 / 5


def test_label_match_counts_same_label_retrievals():
    labels = ["a", "a", "b", "b"]
    queries = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], float)
    items = np.array([[1, 0.1], [1, 0.2], [0.1, 1], [0.2, 1]])
    scores = retrieval_recall(queries, items, [1], labels)
    assert scores["label_match@1"] == {"model": 1.0, "random": 0.5}


def _two_views(n=400, seed=1):
    """Text and audio are two noisy linear views of one latent vector per row."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3))
    text = latent @ rng.normal(size=(3, 8)) + 0.3 * rng.normal(size=(n, 8))
    audio = latent @ rng.normal(size=(3, 6)) + 0.3 * rng.normal(size=(n, 6))
    inputs = _problem(n=n)
    for split, rows in (
        ("train", slice(0, 250)),
        ("val", slice(250, 300)),
        ("test", slice(300, 400)),
    ):
        size = rows.stop - rows.start
        inputs[split]["inputs"] = {
            "text": sparse.csr_matrix(text[rows].astype(np.float32)),
            "audio": audio[rows].astype(np.float32),
        }
        inputs[split]["y"] = np.where(latent[rows, 0] > 0, "a", "b")
        inputs[split]["has"] = {
            "text": np.ones(size, bool),
            "audio": np.ones(size, bool),
        }
    return inputs


@pytest.mark.parametrize(
    "params",
    [
        {
            "method": "cca",
            "n_components": 3,
            "text_components": 6,
            "audio_components": 5,
        },
        {
            "method": "contrastive",
            "dim": 8,
            "branch_units": 32,
            "branch_dropout": 0.0,
            "audio_frames": False,
            "learning_rate": 0.01,
            "batch_size": 64,
            "epochs": 30,
            "patience": 10,
        },
    ],
    ids=["cca", "contrastive"],
)
def test_alignments_retrieve_pairs_far_above_chance(params):
    inputs = _two_views()
    alignment = fit_alignment(inputs, params, seed=0)
    aligned = align_inputs(inputs, alignment)
    dims = alignment.n_components_
    assert aligned["test"]["inputs"]["text"].shape == (100, dims)
    none = {k: v[:0] for k, v in inputs["test"]["inputs"].items()}
    assert alignment.transform(none)[1].shape == (0, dims)
    metrics = evaluate_alignment(aligned, alignment, [1, 5])
    assert metrics["method"] == params["method"]
    assert metrics["status"] == "evaluated" and metrics["n_pairs"] == 100
    assert metrics["train_seconds"] >= 0
    for direction in ("text_to_audio", "audio_to_text"):
        recall = metrics[direction]["recall@5"]
        assert recall["model"] > 5 * recall["random"]
        label_match = metrics[direction]["label_match@1"]
        assert label_match["model"] > label_match["random"] + 0.2


@pytest.mark.parametrize("alignment", [CCAAlignment(), ContrastiveAlignment()])
def test_alignment_without_pairs_learns_nothing(alignment):
    alignment.fit({"text": np.zeros((0, 5)), "audio": np.zeros((0, 3))})
    assert alignment.n_components_ == 0
    text_z, audio_z = alignment.transform(
        {"text": np.ones((4, 5)), "audio": np.ones((4, 3))}
    )
    assert text_z.shape == audio_z.shape == (4, 0)
    text_z, _ = alignment.transform({"text": np.ones((0, 5)), "audio": np.ones((0, 3))})
    assert text_z.shape == (0, 0)


def test_unknown_alignment_method_is_refused():
    with pytest.raises(ValueError, match="Unknown alignment method 'pls'"):
        fit_alignment(_problem(n=60), {"method": "pls"}, seed=0)


def test_audio_frames_encoder_finds_evidence_anywhere_in_the_clip():
    """The class is a short burst in one mel band at a random time; pooled
    statistics are noise, so only the frame encoder can see it."""
    rng = np.random.default_rng(3)
    inputs = _problem(n=240)
    for part in inputs.values():
        n = len(part["y"])
        frames = rng.normal(0, 0.3, (n, 32, 6)).astype(np.float32)
        band = np.searchsorted(CLASSES, part["y"])
        start = rng.integers(0, 28, n)
        for row in range(n):
            frames[row, start[row] : start[row] + 4, band[row]] += 3.0
        part["inputs"]["audio_frames"] = frames
        part["inputs"]["audio"] = rng.normal(size=(n, 4)).astype(np.float32)
    scores = {}
    for use_frames in (True, False):
        params = {**MLP, "modalities": ["audio"], "audio_frames": use_frames}
        model = train_classifier(inputs, params, seed=0)
        assert ("audio_frames" in model.input_names_) is use_frames
        scores[use_frames] = evaluate_classifier(model, inputs)[0]["macro_f1"]
    assert scores[True] > 0.9
    assert scores[False] < 0.6
