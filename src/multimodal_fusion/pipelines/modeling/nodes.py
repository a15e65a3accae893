"""Model inputs, augmented training copies, alignments (CCA and contrastive), and
training and evaluation of one model variant. The alignment and variant nodes are
instantiated once per namespace in pipeline.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from multimodal_fusion.alignment import (
    CCAAlignment,
    ContrastiveAlignment,
    paired_rows,
    retrieval_recall,
)
from multimodal_fusion.datasets import AudioClip
from multimodal_fusion.fusion import (
    FusionClassifier,
    LateFusionClassifier,
    blank_modality,
    make_classifier,
    nonzero_rows,
    stack_inputs,
)
from multimodal_fusion.pipelines.feature_extraction.nodes import FeaturePath
from multimodal_fusion.robustness.audio_robust import augment_clip
from multimodal_fusion.robustness.sweeps import (
    CLEAN,
    MISSING,
    NOISES,
    TEXT_CORRUPTIONS,
    level_key,
    noisy_clip,
    sweep_levels,
)
from multimodal_fusion.robustness.text_robust import augment_text

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MODALITIES = ("text", "audio")
ALIGNMENT_METHODS = {"cca": CCAAlignment, "contrastive": ContrastiveAlignment}
Alignment = CCAAlignment | ContrastiveAlignment
Classifier = FusionClassifier | LateFusionClassifier


def _split_part(rows, contacts, text_features, text_tokens, audio_features) -> dict:
    return {
        "ids": contacts["id"].to_numpy()[rows],
        "y": contacts["label"].to_numpy()[rows],
        "inputs": {
            "text": text_features["tfidf"][rows],
            "text_tokens": text_tokens["tokens"][rows],
            "audio": audio_features["pooled"][rows],
            "audio_frames": audio_features["frames"][rows],
        },
        "has": {
            "text": text_features["present"][rows],
            "audio": audio_features["present"][rows],
        },
    }


def build_model_inputs(
    contacts: pd.DataFrame,
    text_features: dict[str, Any],
    text_tokens: dict[str, Any],
    audio_features: dict[str, Any],
    augmented_train: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per split: ids, labels, modality matrices and presence flags.

    Args:
        contacts: Split contacts.
        text_features, text_tokens, audio_features: Feature sets aligned with
            ``contacts`` row by row.
        augmented_train: Augmented copies of the training rows, as a split (see
            :func:`augment_training_split`), if any.

    Returns:
        ``{split: {"ids", "y", "inputs": {"text", "text_tokens", "audio",
        "audio_frames"}, "has": {"text", "audio"}}}`` for train, val, test and,
        given augmented rows, ``train_augmented``.
    """
    features = {
        "text_features": text_features,
        "text_tokens": text_tokens,
        "audio_features": audio_features,
    }
    for name, feature_set in features.items():
        if not np.array_equal(feature_set["ids"], contacts["id"].to_numpy()):
            raise ValueError(
                f"{name} rows are not aligned with contacts: rerun the "
                "feature_extraction pipeline on the current contacts"
            )
    model_inputs = {
        split: _split_part(
            np.flatnonzero(contacts["split"].to_numpy() == split),
            contacts,
            text_features,
            text_tokens,
            audio_features,
        )
        for split in SPLITS
    }
    if augmented_train is not None and len(augmented_train["y"]):
        model_inputs["train_augmented"] = augmented_train
    return model_inputs


def augment_training_split(
    contacts: pd.DataFrame,
    clean_audio: dict[str, Callable[[], AudioClip]],
    feature_path: FeaturePath,
    params: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Randomly perturbed copies of the training rows, featurised like them.

    Each copy perturbs every training message (word dropout, typos) and clip
    (speed, time shift, gain, noise at a random SNR), then computes the same
    features with the fitted featurizers; variants with ``augment: true`` train
    on these rows as well. Rows keep their modalities and labels.

    Args:
        contacts: Split contacts.
        clean_audio: Prepared clips by id, loaded lazily.
        feature_path: The fitted featurizers and feature widths.
        params: ``copies`` (0 disables), ``text`` (see
            :func:`~multimodal_fusion.robustness.text_robust.augment_text`) and
            ``audio`` (see
            :func:`~multimodal_fusion.robustness.audio_robust.augment_clip`).
        seed: The project seed.

    Returns:
        A split ``{"ids", "y", "inputs", "has"}`` of ``copies`` × n_train rows;
        ids are ``<id>#aug<k>``.
    """
    rng = np.random.default_rng([seed, 1])
    train = contacts[contacts["split"] == "train"]
    augmented = pd.concat(
        [train.iloc[:0]]
        + [train.assign(id=train["id"] + f"#aug{k}") for k in range(params["copies"])],
        ignore_index=True,
    )
    augmented["text"] = [
        augment_text(text, rng, params["text"]) if has else text
        for text, has in zip(augmented["text"], augmented["has_text"], strict=True)
    ]
    clips = _augmented_clips(augmented["id"], clean_audio, params["audio"], rng)
    audio = feature_path.audio_inputs(augmented, clips)
    logger.info("Augmented training split: %d rows", len(augmented))
    return {
        "ids": augmented["id"].to_numpy(),
        "y": augmented["label"].to_numpy(),
        "inputs": {
            **feature_path.text_inputs(augmented),
            "audio": audio["audio"],
            "audio_frames": audio["audio_frames"],
        },
        "has": {"text": augmented["has_text"].to_numpy(), "audio": audio["present"]},
    }


def perturb_test_split(  # noqa: PLR0917 - a node: Kedro passes inputs by position
    contacts: pd.DataFrame,
    clean_audio: dict[str, Callable[[], AudioClip]],
    model_inputs: dict[str, Any],
    feature_path: FeaturePath,
    params: dict[str, Any],
    seed: int,
) -> dict[str, dict[str, Any]]:
    """The test split featurised again under every noise and text corruption
    level of the robustness sweeps, through the same fitted featurizers.

    Noise is mixed into each prepared clip (its own seeded generator, so a
    level's clips are the same in every run); text corruptions act on the
    cleaned messages. Rows keep their ids, labels and modalities; rows without
    the perturbed modality stay as they are. Missing-modality levels need no
    features: the sweep blanks the clean inputs.

    Args:
        contacts: Split contacts.
        clean_audio: Prepared clips by id, loaded lazily.
        model_inputs: The splits (the clean test split is reused as is).
        feature_path: The fitted featurizers and feature widths.
        params: The ``robustness`` parameters (see
            :func:`~multimodal_fusion.robustness.sweeps.sweep_levels`).
        seed: The project seed.

    Returns:
        ``{level key: split}``: ``clean`` and ``<imperfection>@<level>`` (see
        :func:`~multimodal_fusion.robustness.sweeps.level_key`), each a split
        like ``model_inputs["test"]``.
    """
    test = contacts[contacts["split"] == "test"].reset_index(drop=True)
    clean = model_inputs["test"]
    sweep = {CLEAN: clean}
    for number, (name, levels) in enumerate(sweep_levels(params).items()):
        for step, level in enumerate(levels):
            key = level_key(name, level)
            if key in sweep or name in MISSING:
                continue
            draw = [seed, 2, number, step]
            if name in NOISES:
                clips = _noisy_clips(test, clean_audio, NOISES[name], level, draw)
                audio = feature_path.audio_inputs(test, clips)
                changed = {k: audio[k] for k in ("audio", "audio_frames")}
            else:
                rng = np.random.default_rng(draw)
                corrupt = TEXT_CORRUPTIONS[name]
                texts = [corrupt(text, rng, level) for text in test["text"]]
                changed = feature_path.text_inputs(test.assign(text=texts))
            sweep[key] = {**clean, "inputs": {**clean["inputs"], **changed}}
    logger.info(
        "Robustness sweep: %d perturbed copies of the test split", len(sweep) - 1
    )
    return sweep


def _noisy_clips(
    rows: pd.DataFrame,
    clean_audio: dict[str, Callable[[], AudioClip]],
    kind: str,
    snr_db: float,
    draw: list[int],
) -> dict[str, Callable[[], AudioClip]]:
    """Lazy loaders of the rows' clips with noise; clip ``i`` draws its noise
    from the generator seeded ``[*draw, i]``."""

    def loader(cid: str, i: int) -> Callable[[], AudioClip]:
        def load() -> AudioClip:
            rng = np.random.default_rng([*draw, i])
            return noisy_clip(clean_audio[cid](), kind, snr_db, rng)

        return load

    return {
        cid: loader(cid, i)
        for i, (cid, has) in enumerate(zip(rows["id"], rows["has_audio"], strict=True))
        if has
    }


def _augmented_clips(
    ids: pd.Series,
    clean_audio: dict[str, Callable[[], AudioClip]],
    params: dict[str, Any],
    rng: np.random.Generator,
) -> dict[str, Callable[[], AudioClip]]:
    """Lazy loaders of perturbed clips for augmented ids ``<id>#aug<k>``; each
    clip gets its own seed, so it is the same whenever it is loaded."""

    def loader(source: str, clip_seed: int) -> Callable[[], AudioClip]:
        def load() -> AudioClip:
            clip_rng = np.random.default_rng(clip_seed)
            return augment_clip(clean_audio[source](), clip_rng, params)

        return load

    return {cid: loader(cid.split("#")[0], int(rng.integers(2**32))) for cid in ids}


def _paired(part: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray]:
    """The inputs and labels of a split's rows that have both text and audio."""
    rows = paired_rows(
        part["has"]["text"], part["has"]["audio"], part["inputs"]["text"]
    )
    return {name: matrix[rows] for name, matrix in part["inputs"].items()}, part["y"][
        rows
    ]


def fit_alignment(
    model_inputs: dict[str, Any], params: dict[str, Any], seed: int
) -> Alignment:
    """Fits an alignment on the training rows that have both text and audio.

    Args:
        model_inputs: Splits from :func:`build_model_inputs`.
        params: ``method`` (``cca`` or ``contrastive``) and the hyperparameters
            of :class:`CCAAlignment` or :class:`ContrastiveAlignment`.
        seed: The project seed.

    Returns:
        The fitted alignment (``n_components_`` 0 when there were too few pairs).
    """
    params = dict(params)
    method = params.pop("method")
    if method not in ALIGNMENT_METHODS:
        raise ValueError(
            f"Unknown alignment method '{method}' in parameters_modeling.yml; "
            f"choose one of {sorted(ALIGNMENT_METHODS)}."
        )
    train, train_y = _paired(model_inputs["train"])
    alignment = ALIGNMENT_METHODS[method](**params, seed=seed).fit(
        train, train_y, validation=_paired(model_inputs["val"])
    )
    logger.info(
        "%s alignment: %d dimensions from %d paired rows",
        method,
        alignment.n_components_,
        len(train_y),
    )
    return alignment


def align_inputs(model_inputs: dict[str, Any], alignment: Alignment) -> dict[str, Any]:
    """The same splits with each modality projected into the common space.

    A row missing a modality (or whose text has no known term) keeps zeros for
    it in the common space too.
    """
    aligned = {}
    for split, part in model_inputs.items():
        text_z, audio_z = alignment.transform(part["inputs"])
        text_z[~(part["has"]["text"] & nonzero_rows(part["inputs"]["text"]))] = 0
        audio_z[~part["has"]["audio"]] = 0
        aligned[split] = {**part, "inputs": {"text": text_z, "audio": audio_z}}
    return aligned


def evaluate_alignment(
    aligned_inputs: dict[str, Any], alignment: Alignment, recall_at: list[int]
) -> dict[str, Any]:
    """Cross-modal retrieval Recall@k on the test rows with both modalities.

    Args:
        aligned_inputs: Output of :func:`align_inputs`.
        alignment: The fitted alignment (for its method and size).
        recall_at: The k values of Recall@k.

    Returns:
        ``{"method", "n_components", "n_pairs", "status", "train_seconds",
        "text_to_audio", "audio_to_text"}`` with model and random-baseline
        Recall@k and label_match@1 per direction.
    """
    test = aligned_inputs["test"]
    rows = paired_rows(
        test["has"]["text"], test["has"]["audio"], test["inputs"]["text"]
    )
    text_z, audio_z = test["inputs"]["text"][rows], test["inputs"]["audio"][rows]
    result = {
        "method": alignment.method,
        "n_components": int(alignment.n_components_),
        "n_pairs": int(rows.sum()),
    }
    if alignment.n_components_ < 1 or rows.sum() < 2:
        return {
            **result,
            "status": "skipped",
            "reason": "too few rows with both modalities",
        }
    ks = list(recall_at)
    labels = test["y"][rows]
    return {
        **result,
        "status": "evaluated",
        "train_seconds": round(alignment.train_seconds_, 2),
        "text_to_audio": retrieval_recall(text_z, audio_z, ks, labels),
        "audio_to_text": retrieval_recall(audio_z, text_z, ks, labels),
    }


def train_classifier(
    model_inputs: dict[str, Any], params: dict[str, Any], seed: int
) -> Classifier:
    """Trains one variant on the train split, early-stopping on val.

    Args:
        model_inputs: Splits from :func:`build_model_inputs` or :func:`align_inputs`.
        params: The variant's estimator hyperparameters incl. ``modalities`` and
            ``fusion`` (see :func:`multimodal_fusion.fusion.make_classifier`),
            and ``augment``: whether to train on the ``train_augmented`` rows too.
        seed: The project seed.

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
    model.fit(inputs, y, validation=(val["inputs"], val["y"]))
    if model.skipped_reason_:
        logger.warning(
            "Variant with %s skipped: %s", params["modalities"], model.skipped_reason_
        )
    return model


def _scores(y, predicted) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "macro_f1": float(f1_score(y, predicted, average="macro")),
    }


def _by_available_modalities(has: dict[str, np.ndarray], y, predicted) -> dict:
    """Test rows and accuracy per combination of available modalities."""
    groups = {
        "text_and_audio": has["text"] & has["audio"],
        "text_only": has["text"] & ~has["audio"],
        "audio_only": ~has["text"] & has["audio"],
    }
    return {
        name: {
            "n": int(rows.sum()),
            "accuracy": float(np.mean(y[rows] == predicted[rows]))
            if rows.any()
            else None,
        }
        for name, rows in groups.items()
    }


def evaluate_classifier(
    model: Classifier, model_inputs: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Test-split metrics and per-contact predictions of one variant.

    Every test row is predicted, whichever modalities it has.

    Returns:
        Metrics (``accuracy``, ``macro_f1``, ``val_macro_f1``, ``modalities``,
        ``split_sizes``, training figures, ``status``; ``by_available_modalities``;
        for models of several modalities ``blanked``: test scores with one
        modality blanked in every row) and the test predictions
        ``id,label,predicted,confidence,has_text,has_audio``.
    """
    sizes = {split: len(model_inputs[split]["y"]) for split in SPLITS}
    test = model_inputs["test"]
    base = {"modalities": list(model.modalities), "split_sizes": sizes}
    if model.skipped_reason_:
        metrics = {
            **base,
            "status": "skipped",
            "reason": model.skipped_reason_,
            "accuracy": None,
            "macro_f1": None,
        }
        return metrics, pd.DataFrame(columns=["id", "label", "predicted", "confidence"])
    proba = model.predict_proba(test["inputs"])
    predicted = model.classes_[proba.argmax(axis=1)]
    val = model_inputs["val"]
    metrics = {
        **base,
        "status": "trained",
        **_scores(test["y"], predicted),
        "val_macro_f1": _scores(val["y"], model.predict(val["inputs"]))["macro_f1"],
        "train_rows": model.n_train_rows_,
        "n_params": model.n_params_,
        "epochs": model.epochs_,
        "train_seconds": round(model.train_seconds_, 2),
        "by_available_modalities": _by_available_modalities(
            test["has"], test["y"], predicted
        ),
    }
    if len(model.modalities_) > 1:
        metrics["blanked"] = {
            modality: _scores(
                test["y"], model.predict(blank_modality(test["inputs"], modality))
            )
            for modality in model.modalities_
        }
    predictions = pd.DataFrame(
        {
            "id": test["ids"],
            "label": test["y"],
            "predicted": predicted,
            "confidence": proba.max(axis=1),
            "has_text": test["has"]["text"],
            "has_audio": test["has"]["audio"],
        }
    )
    return metrics, predictions


def collect_alignment_metrics(**alignments: dict[str, Any]) -> dict[str, Any]:
    """The retrieval metrics of every alignment, by alignment name."""
    return alignments
