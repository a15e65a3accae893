"""The floor under the fusion variants (multimodal_fusion.routing), on real Keras
training: each presence pattern goes to the model that scored best on
validation, an aligned variant's model reads the model inputs, and the routed
model survives the package's state and the exports' runtimes."""

import logging

import numpy as np
import pytest
from kedro.pipeline import Node
from sklearn.metrics import f1_score

from multimodal_fusion.alignment import CCAAlignment, align_inputs
from multimodal_fusion.errors import UserInputError
from multimodal_fusion.exports import networks, use_runtimes
from multimodal_fusion.fusion import blank_modality
from multimodal_fusion.hooks import ProjectHooks
from multimodal_fusion.persistence import Stateful
from multimodal_fusion.routing import (
    FUSED,
    RoutedClassifier,
    clearly_better,
    routes_sentence,
    short_routes,
)
from multimodal_fusion.training import (
    combine_trained_models,
    route_trained_seeds,
    train_classifier,
)
from tests.pipelines.modeling.test_nodes import MLP, _problem

PARAMS = {**MLP, "audio_frames": False, "epochs": 8}


def _macro_f1(y, predicted):
    return f1_score(y, predicted, average="macro")


@pytest.fixture(scope="module")
def text_says_nothing():
    """The test problem with its text replaced by noise in every split, and its
    text_only, audio_only and early-fusion models."""
    inputs = _problem(n=600)
    rng = np.random.default_rng(7)
    for part in inputs.values():
        text = part["inputs"]["text"]
        noise = rng.random(text.shape).astype(np.float32)
        part["inputs"]["text"] = type(text)(noise)
        tokens = part["inputs"]["text_tokens"]
        part["inputs"]["text_tokens"] = rng.integers(5, 9, tokens.shape).astype(
            tokens.dtype
        )
    models = {
        name: train_classifier(inputs, {**PARAMS, "modalities": modalities}, seed=0)
        for name, modalities in {
            "text": ["text"],
            "audio": ["audio"],
            "fused": ["text", "audio"],
        }.items()
    }
    return inputs, models


def _route(inputs, models, **kwargs):
    val = inputs["val"]
    return RoutedClassifier.of_trained(
        models["fused"],
        {"text": models["text"], "audio": models["audio"]},
        (val["inputs"], val["y"]),
        **kwargs,
    )


def test_each_pattern_goes_to_the_model_that_scored_best_on_validation(
    text_says_nothing,
):
    inputs, models = text_says_nothing
    routed = _route(inputs, models)
    assert set(routed.routes_) == {"text+audio", "text", "audio"}
    assert set(routed.fallbacks_) == set(routed.routes_.values()) - {FUSED}
    for pattern, scores in routed.route_scores_.items():
        assert set(scores) == {FUSED, *pattern.split("+")}
        best = max(pattern.split("+"), key=scores.__getitem__)
        assert routed.routes_[pattern] in (FUSED, best)
    # The text is noise: with it blanked, every row's answer is the audio
    # route's, and the routed model is never below audio_only on those rows.
    test = inputs["test"]
    no_text = blank_modality(test["inputs"], "text")
    route = routed.routes_["audio"]
    expected = (
        models["audio"].predict(no_text)
        if route == "audio"
        else models["fused"].predict(no_text)
    )
    np.testing.assert_array_equal(routed.predict(no_text), expected)
    audio_f1 = _macro_f1(test["y"], models["audio"].predict(test["inputs"]))
    assert _macro_f1(test["y"], routed.predict(test["inputs"])) >= audio_f1 - 0.05
    assert (
        routed.val_macro_f1_ >= max(routed.route_scores_["text+audio"].values()) - 1e-9
    )
    sentence = routes_sentence(routed.routes_, routed.route_scores_)
    moved = [p for p, r in routed.routes_.items() if r != FUSED]
    assert all(f"rows with {p.replace('+', ' and ')} go to" in sentence for p in moved)
    short = short_routes(routed.routes_)
    assert all(
        f"{p.replace('+', ' and ')} → {routed.routes_[p]}_only" in short for p in moved
    )


def test_the_fused_network_keeps_rows_only_when_clearly_better():
    y = np.array(["a"] * 100)
    right, wrong = np.array(["a"]), np.array(["b"])

    def answers(n_right):
        return np.concatenate(
            [np.repeat(right, n_right), np.repeat(wrong, 100 - n_right)]
        )

    # 10 rows only the fused network gets right: 10 > sqrt(10) standard errors.
    assert clearly_better(answers(90), answers(80), y)
    # 3 rows only the fused network gets right, 1 only the unimodal model: 2 more
    # right is sqrt(4) = 1 standard error, not more.
    unimodal = answers(79)
    unimodal[85] = "a"
    assert not clearly_better(answers(82), unimodal, y)
    assert not clearly_better(answers(80), answers(80), y)  # a tie keeps the floor


def test_rows_are_routed_by_the_modalities_they_have(text_says_nothing):
    inputs, models = text_says_nothing
    routed = _route(inputs, models)
    routed.routes_ = {"text+audio": FUSED, "text": "text", "audio": "audio"}
    routed.fallbacks_ = {"text": models["text"], "audio": models["audio"]}
    test = inputs["test"]["inputs"]
    n = len(inputs["test"]["y"])
    text_only_rows = np.arange(n) % 3 == 0
    audio_only_rows = np.arange(n) % 3 == 1
    mixed = blank_modality(
        blank_modality(test, "audio", text_only_rows), "text", audio_only_rows
    )
    proba = routed.predict_proba(mixed)
    both = ~(text_only_rows | audio_only_rows)
    for rows, model in [
        (text_only_rows, models["text"]),
        (audio_only_rows, models["audio"]),
        (both, models["fused"]),
    ]:
        part = {k: v[rows] for k, v in mixed.items()}
        np.testing.assert_allclose(proba[rows], model.predict_proba(part), atol=1e-6)


def test_without_fallback_every_row_stays_on_the_network(text_says_nothing):
    inputs, models = text_says_nothing
    routed = _route(inputs, models, fallback=False)
    assert set(routed.routes_.values()) == {FUSED}
    assert routed.fallbacks_ == {}
    test = inputs["test"]["inputs"]
    np.testing.assert_array_equal(
        routed.predict_proba(test), models["fused"].predict_proba(test)
    )
    assert routes_sentence(routed.routes_, {}) == "every row stays on the fused network"
    assert short_routes(routed.routes_) == ""


def test_an_aligned_variant_projects_the_model_inputs_itself(text_says_nothing):
    inputs, models = text_says_nothing
    val = inputs["val"]
    alignment = CCAAlignment(n_components=3, text_components=4, audio_components=3)
    alignment.fit(inputs["train"]["inputs"])
    aligned = align_inputs(inputs, alignment)
    network = train_classifier(
        aligned, {**PARAMS, "modalities": ["text", "audio"]}, seed=0
    )
    routed, others = route_trained_seeds(
        inputs, False, network, [], models["text"], [], models["audio"], [], alignment
    )
    assert others == []
    np.testing.assert_allclose(
        routed.predict_proba(inputs["test"]["inputs"]),
        network.predict_proba(aligned["test"]["inputs"]),
        atol=1e-6,
    )
    # The routes are learned on the raw validation split too.
    floor = route_trained_seeds(
        inputs, True, network, [], models["text"], [], models["audio"], [], alignment
    )[0]
    assert floor.val_macro_f1_ >= max(floor.route_scores_["text+audio"].values()) - 1e-9
    assert set(floor.routes_) == {"text+audio", "text", "audio"}
    del val


def test_the_routed_model_survives_the_package_state_and_the_runtimes(
    text_says_nothing,
):
    inputs, models = text_says_nothing
    routed = _route(inputs, models)
    routed.routes_ = {"text+audio": FUSED, "text": "text", "audio": "audio"}
    routed.fallbacks_ = {"text": models["text"], "audio": models["audio"]}
    test = inputs["test"]["inputs"]
    rebuilt = Stateful.from_state(routed.get_state())
    np.testing.assert_allclose(
        rebuilt.predict_proba(test), routed.predict_proba(test), atol=1e-6
    )
    assert set(networks(routed)) == {"model", "text_only", "audio_only"}

    class Constant:
        def predict(self, inputs, multiple):
            return np.full((len(inputs["presence"]), 3), 1 / 3, np.float32)

    constant = use_runtimes(routed, {"text_only": Constant()})
    text_rows = blank_modality(test, "audio")
    np.testing.assert_allclose(constant.predict_proba(text_rows), 1 / 3)
    np.testing.assert_allclose(
        constant.predict_proba(test), routed.predict_proba(test), atol=1e-6
    )


@pytest.mark.parametrize("fallback", ["yes", 1, None])
def test_a_bad_fallback_setting_names_the_parameter(text_says_nothing, fallback):
    inputs, models = text_says_nothing
    with pytest.raises(UserInputError, match="modeling.unimodal_fallback"):
        route_trained_seeds(
            inputs,
            fallback,
            models["fused"],
            [],
            models["text"],
            [],
            models["audio"],
            [],
        )


def test_other_seeds_are_routed_with_the_unimodal_models_of_their_seed(
    text_says_nothing,
):
    inputs, models = text_says_nothing
    skipped_text = train_classifier(
        {
            **inputs,
            "train": {
                **inputs["train"],
                "inputs": blank_modality(inputs["train"]["inputs"], "text"),
            },
        },
        {**PARAMS, "modalities": ["text"]},
        seed=0,
    )
    assert skipped_text.skipped_reason_
    model, others = route_trained_seeds(
        inputs,
        True,
        models["fused"],
        [models["fused"]],
        skipped_text,
        [],
        models["audio"],
        [models["audio"]],
    )
    assert len(others) == 1
    # A skipped unimodal model is no fallback, in any seed.
    for routed in (model, *others):
        assert "text" not in routed.fallbacks_
        assert "text" not in routed.routes_.values()


def _fusion_network(kind, inputs, models):
    """A fusion variant's network trained on ``inputs``, and its alignment."""
    if kind == "late":
        return combine_trained_models(inputs, models["text"], models["audio"]), None
    if kind == "cca":
        alignment = CCAAlignment(n_components=3, text_components=4, audio_components=3)
        alignment.fit(inputs["train"]["inputs"])
        aligned = align_inputs(inputs, alignment)
        params = {**PARAMS, "modalities": ["text", "audio"]}
        return train_classifier(aligned, params, seed=0), alignment
    params = {**PARAMS, "modalities": ["text", "audio"], "fusion": kind}
    return train_classifier(inputs, params, seed=0), None


@pytest.mark.parametrize("kind", ["concat", "gated", "attention", "late", "cca"])
def test_no_fusion_variant_falls_below_the_audio_when_the_text_says_nothing(
    text_says_nothing, kind
):
    # Issue #13's floor: test macro-F1 >= audio_only's - 0.02, and with either
    # modality blanked in every row >= 90 % of the matching unimodal model's.
    inputs, models = text_says_nothing
    network, alignment = _fusion_network(kind, inputs, models)
    routed, _ = route_trained_seeds(
        inputs, True, network, [], models["text"], [], models["audio"], [], alignment
    )
    test = inputs["test"]
    y, x = test["y"], test["inputs"]
    audio_f1 = _macro_f1(y, models["audio"].predict(x))
    assert _macro_f1(y, routed.predict(x)) >= audio_f1 - 0.02
    for modality, unimodal in [("text", models["audio"]), ("audio", models["text"])]:
        blanked = blank_modality(x, modality)
        kept = _macro_f1(y, routed.predict(blanked))
        assert kept >= 0.9 * _macro_f1(y, unimodal.predict(blanked)), modality


def test_the_console_says_which_rows_each_variant_hands_to_a_unimodal_model(
    text_says_nothing, caplog
):
    inputs, models = text_says_nothing
    routed = _route(inputs, models)
    routed.routes_ = {"text+audio": FUSED, "text": "text", "audio": FUSED}
    node = Node(
        lambda x: x, "a", "b", name="route_to_unimodal", namespace="early_fusion"
    )
    with caplog.at_level(logging.INFO, logger="multimodal_fusion.hooks"):
        ProjectHooks().after_node_run(node, {"model": routed, "seeds": [routed]})
    # One line for the variant; the other seeds' models add none.
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("hooks")]
    assert lines == ["early_fusion floor: text → text_only"]
