"""The training of one model variant: the modeling pipeline's nodes (each
variant trained once per seed of ``modeling.seeds``), and what each trial of the
tuning pipeline runs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from multimodal_fusion.alignment import Alignment
from multimodal_fusion.errors import UserInputError
from multimodal_fusion.fusion import (
    Classifier,
    FusionClassifier,
    LateFusionClassifier,
    make_classifier,
    stack_inputs,
)
from multimodal_fusion.routing import RoutedClassifier

logger = logging.getLogger(__name__)


def train_classifier(
    model_inputs: dict[str, Any],
    params: dict[str, Any],
    seed: int,
    callbacks: Sequence[Any] = (),
) -> Classifier:
    """Trains one variant on the train split, early-stopping on val.

    Args:
        model_inputs: Splits from :func:`build_model_inputs` or :func:`align_inputs`.
        params: The variant's estimator hyperparameters incl. ``modalities`` and
            ``fusion`` (see :func:`multimodal_fusion.fusion.make_classifier`),
            and ``augment``: whether to train on the ``train_augmented`` rows too.
        seed: The project seed.
        callbacks: Extra Keras callbacks for every network it trains (the tuning
            pipeline's pruning).

    Returns:
        The fitted classifier (``skipped_reason_`` set when it had no data).
    """
    params = dict(params)
    train, val = model_inputs["train"], model_inputs["val"]
    inputs, y = train["inputs"], train["y"]
    augmented = model_inputs.get("train_augmented")
    if params.pop("augment", False):
        if augmented is None or not len(augmented["y"]):
            logger.warning(
                "augment is true but there are no augmented rows "
                "(modeling.augmentation.copies is 0): training on the originals only"
            )
        else:
            inputs = stack_inputs(inputs, augmented["inputs"])
            y = np.concatenate([y, augmented["y"]])
    model = make_classifier(params, seed)
    model.fit(inputs, y, validation=(val["inputs"], val["y"]), callbacks=callbacks)
    if model.skipped_reason_:
        logger.warning(
            "Variant with %s skipped: %s", params["modalities"], model.skipped_reason_
        )
    return model


def seed_series(seed: int, seeds: int) -> list[int]:
    """The seeds a variant is trained with: the project seed, then the next
    ``seeds - 1`` integers.

    Raises:
        UserInputError: when ``seeds`` is not a whole number of at least 1.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise UserInputError(
            f"modeling.seeds must be a whole number of at least 1, got {seeds!r}: "
            "set it in conf/<env>/parameters_modeling.yml (1 trains each variant once)."
        )
    return [seed + i for i in range(seeds)]


def train_seeds(
    model_inputs: dict[str, Any], params: dict[str, Any], seed: int, seeds: int = 1
) -> tuple[Classifier, list[Classifier]]:
    """Trains one variant once per seed of :func:`seed_series`.

    The project seed's model is the variant's model (the same as with one
    seed); the others only measure how much its scores move with the seed
    (evaluation's ``seed_spread``). A skipped variant is not trained again.

    Returns:
        The variant's model and the other seeds' models, in seed order.
    """
    first, *others = seed_series(seed, seeds)
    model = train_classifier(model_inputs, params, first)
    if model.skipped_reason_:
        return model, []
    return model, [train_classifier(model_inputs, params, s) for s in others]


def combine_trained_seeds(
    model_inputs: dict[str, Any], *models: FusionClassifier | list[FusionClassifier]
) -> tuple[LateFusionClassifier, list[LateFusionClassifier]]:
    """Late fusion of trained unimodal models, once per seed: the members'
    models, then their other seeds' models (lists, in the same member order),
    combined seed by seed with :func:`combine_trained_models`.

    Returns:
        The combined model and the other seeds' combined models.
    """
    members, others = models[: len(models) // 2], models[len(models) // 2 :]
    model = combine_trained_models(model_inputs, *members)
    if model.skipped_reason_:
        return model, []
    return model, [
        combine_trained_models(model_inputs, *seeded)
        for seeded in zip(*others, strict=True)
    ]


def combine_trained_models(
    model_inputs: dict[str, Any], *members: FusionClassifier
) -> LateFusionClassifier:
    """Late fusion of trained unimodal models (one per modality, in the order of
    their modalities): weights fit on the val split, no network trained again.

    Args:
        model_inputs: Splits from :func:`build_model_inputs`.
        *members: The unimodal variants' fitted classifiers.

    Returns:
        The combined classifier (``skipped_reason_`` set when no member was trained).
    """
    val = model_inputs["val"]
    by_modality = {member.modalities[0]: member for member in members}
    model = LateFusionClassifier.of_trained(by_modality, (val["inputs"], val["y"]))
    if model.skipped_reason_:
        logger.warning("Late fusion skipped: %s", model.skipped_reason_)
    return model


def route_trained_seeds(  # noqa: PLR0913, PLR0917 - a node: Kedro passes inputs by position
    model_inputs: dict[str, Any],
    fallback: bool,
    network: Classifier,
    seed_networks: list[Classifier],
    text_model: FusionClassifier,
    text_seed_models: list[FusionClassifier],
    audio_model: FusionClassifier,
    audio_seed_models: list[FusionClassifier],
    alignment: Alignment | None = None,
) -> tuple[RoutedClassifier, list[RoutedClassifier]]:
    """A fusion variant's trained network with the unimodal models as its floor
    (:class:`~multimodal_fusion.routing.RoutedClassifier`), seed by seed: each
    seed's network with the unimodal models of the same seed.

    Args:
        model_inputs: Splits from :func:`build_model_inputs` (the routes are
            fit on ``val``).
        fallback: ``modeling.unimodal_fallback``: false keeps every row on the
            network.
        network, seed_networks: The variant's network and its other seeds'.
        text_model, text_seed_models, audio_model, audio_seed_models: The
            ``text_only`` and ``audio_only`` models and their other seeds'.
        alignment: The alignment whose common space the network reads, if any.

    Returns:
        The routed model and the other seeds' routed models.
    """
    if not isinstance(fallback, bool):
        raise UserInputError(
            f"modeling.unimodal_fallback must be true or false, got {fallback!r}: "
            "set it in conf/<env>/parameters_modeling.yml."
        )
    val = model_inputs["val"]

    def route(fused, text, audio) -> RoutedClassifier:
        return RoutedClassifier.of_trained(
            fused,
            {"text": text, "audio": audio},
            (val["inputs"], val["y"]),
            alignment=alignment,
            fallback=fallback,
        )

    def per_seed(model, others):
        # A skipped unimodal variant has no other seeds' models: it is skipped
        # in every seed.
        return (
            others
            if len(others) == len(seed_networks)
            else [model] * len(seed_networks)
        )

    model = route(network, text_model, audio_model)
    others = zip(
        seed_networks,
        per_seed(text_model, text_seed_models),
        per_seed(audio_model, audio_seed_models),
        strict=True,
    )
    return model, [route(*seeded) for seeded in others]
