"""Scoring the trained variants on the test split: predictions and metrics,
cross-modal retrieval of the alignments, the robustness sweeps (the test split
featurised again under every imperfection), calibration, per-class scores and
complexity; then one ``metrics`` entry per variant and the verdict.

Every input is a persisted catalog entry, so ``kedro run --pipelines evaluation``
re-scores the models of the last run without training them again.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score

from multimodal_fusion.alignment import (
    Alignment,
    paired_rows,
    retrieval_recall,
)
from multimodal_fusion.datasets import AudioClip
from multimodal_fusion.evaluation import (
    TOP_K,
    bootstrap_macro_f1,
    data_fingerprints,
    expected_calibration_error,
    interval,
    per_class_scores,
    reliability_bins,
    top_labels,
    trained_variants,
)
from multimodal_fusion.featurization import FeaturePath
from multimodal_fusion.fusion import (
    Classifier,
    blank_modality,
)
from multimodal_fusion.robustness.sweeps import (
    CLEAN,
    MISSING,
    NOISES,
    PERTURBED_MODALITY,
    TEXT_CORRUPTIONS,
    effective_robustness,
    level_key,
    noisy_clip,
    relative_robustness,
    sweep_levels,
)

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# Defaults of the ``reporting.reliance`` parameters (see modality_reliance).
RELIANCE_DEFAULTS = {"informative_margin": 0.1, "min_drop": 0.01}


def perturb_test_split(  # noqa: PLR0917 - a node: Kedro passes inputs by position
    contacts: pd.DataFrame,
    clean_audio: dict[str, Callable[[], AudioClip]],
    model_inputs: dict[str, Any],
    feature_path: FeaturePath,
    params: dict[str, Any],
    seed: int,
    engine: dict[str, Any] | None = None,
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
        engine: Where the clips are featurised (the ``engine`` parameters).

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
                audio = feature_path.audio_inputs(test, clips, engine)
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
    model: Classifier,
    model_inputs: dict[str, Any],
    seed_models: Sequence[Classifier] = (),
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Test-split metrics and per-contact predictions of one variant.

    Every test row is predicted, whichever modalities it has.

    Args:
        model: The variant's model (trained with the project seed).
        model_inputs: The splits.
        seed_models: The variant trained with the other seeds of
            ``modeling.seeds``: scored for ``seed_spread`` only.

    Returns:
        Metrics (``accuracy``, ``macro_f1``, ``val_macro_f1``, ``modalities``,
        ``split_sizes``, training figures, ``status``; ``by_available_modalities``;
        ``seed_spread`` (:func:`seed_spread`); for models of several modalities
        ``blanked``: test scores with one modality blanked in every row, and
        ``routes``: the model each presence pattern goes to, with the
        validation macro-F1 it was chosen on) and the
        test predictions
        ``id,label,predicted,confidence,has_text,has_audio`` and the top three
        labels and probabilities (``label_1``, ``probability_1``, ...).
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
    if getattr(model, "routes_", None):
        metrics["routes"] = {
            "routes": model.routes_,
            "validation_macro_f1": model.route_scores_,
        }
    metrics["seed_spread"] = seed_spread(
        [model.seed, *(m.seed for m in seed_models)],
        [
            metrics["macro_f1"],
            *(
                _scores(test["y"], m.predict(test["inputs"]))["macro_f1"]
                for m in seed_models
            ),
        ],
    )
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
            **top_labels(proba, [str(c) for c in model.classes_], TOP_K),
        }
    )
    return metrics, predictions


def seed_spread(seeds: Sequence[int], macro_f1: Sequence[float]) -> dict[str, Any]:
    """Test macro-F1 of one variant trained with each seed: the scores, their
    mean and sample standard deviation (None with one seed)."""
    scores = np.asarray(macro_f1, dtype=float)
    return {
        "seeds": [int(s) for s in seeds],
        "macro_f1": scores.tolist(),
        "mean": float(scores.mean()),
        "std": float(scores.std(ddof=1)) if len(scores) > 1 else None,
    }


def seed_gains(
    fused: dict[str, Any], unimodal: dict[str, Any]
) -> tuple[list[int], np.ndarray]:
    """The seeds two variants were both trained with, and the fused variant's
    test macro-F1 minus the unimodal one's for each (empty without a
    ``seed_spread`` on either)."""
    if not (fused.get("seed_spread") and unimodal.get("seed_spread")):
        return [], np.array([])
    spread = unimodal["seed_spread"]
    alone = dict(zip(spread["seeds"], spread["macro_f1"], strict=True))
    spread = fused["seed_spread"]
    shared = [
        (s, f - alone[s])
        for s, f in zip(spread["seeds"], spread["macro_f1"], strict=True)
        if s in alone
    ]
    return [s for s, _ in shared], np.array([g for _, g in shared])


def seed_gain_interval(
    fused: dict[str, Any], unimodal: dict[str, Any], level: float = 0.95
) -> dict[str, Any] | None:
    """The fusion gain seed by seed (:func:`seed_gains`) with its mean, sample
    standard deviation and Student-t ``level`` interval of the mean; None when
    the two share fewer than two seeds."""
    seeds, gains = seed_gains(fused, unimodal)
    if len(gains) < 2:  # noqa: PLR2004 - a spread needs two seeds
        return None
    mean, std = float(gains.mean()), float(gains.std(ddof=1))
    half = (
        float(stats.t.ppf((1 + level) / 2, len(gains) - 1)) * std / np.sqrt(len(gains))
    )
    return {
        "seeds": seeds,
        "gains": gains.tolist(),
        "mean": mean,
        "std": std,
        "ci": [mean - half, mean + half],
    }


def _significant(*intervals: list[float] | None) -> bool | None:
    """Whether every given interval excludes 0, all on the same side; None
    when there is none."""
    given = [ci for ci in intervals if ci is not None]
    if not given:
        return None
    return all(ci[0] > 0 for ci in given) or all(ci[1] < 0 for ci in given)


def collect_alignment_metrics(**alignments: dict[str, Any]) -> dict[str, Any]:
    """The retrieval metrics of every alignment, by alignment name."""
    return alignments


def sweep_robustness(
    model: Classifier,
    sweep_inputs: dict[str, Any],
    params: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """A variant's test macro-F1 at every level of every imperfection.

    Args:
        model: The trained variant.
        sweep_inputs: The perturbed test splits in the variant's input space
            (from ``perturb_test_split`` in the modeling pipeline).
        params: The ``robustness`` parameters.
        seed: The project seed (which test rows lose a modality).

    Returns:
        ``{imperfection: {"levels", "macro_f1", "relative_robustness"}}``; empty
        for a skipped variant.
    """
    if model.skipped_reason_:
        return {}
    clean = sweep_inputs[CLEAN]
    scores: dict[str, float] = {}

    def score(key: str, inputs: dict[str, Any]) -> float:
        if key not in scores:
            scores[key] = float(
                f1_score(clean["y"], model.predict(inputs), average="macro")
            )
        return scores[key]

    curves = {}
    for number, (name, levels) in enumerate(sweep_levels(params).items()):
        if PERTURBED_MODALITY[name] not in model.modalities:
            # The model never reads what this imperfection changes.
            keys = [CLEAN] * len(levels)
        else:
            keys = [level_key(name, level) for level in levels]
        if name in MISSING:
            n = len(clean["y"])
            order = np.random.default_rng([seed, 3, number]).permutation(n)
        curve = []
        for level, key in zip(levels, keys, strict=True):
            if key != CLEAN and name in MISSING:
                rows = np.zeros(n, bool)
                rows[order[: round(level * n)]] = True
                inputs = blank_modality(clean["inputs"], MISSING[name], rows)
            else:
                inputs = sweep_inputs[key]["inputs"]
            curve.append(score(key, inputs))
        curves[name] = {
            "levels": levels,
            "macro_f1": curve,
            "relative_robustness": relative_robustness(curve),
        }
    return curves


def assess_variant(  # noqa: PLR0913, PLR0917 - a node: Kedro passes inputs by position
    metrics: dict[str, Any],
    model: Classifier,
    model_inputs: dict[str, Any],
    test_predictions: pd.DataFrame,
    robustness: dict[str, Any],
    params: dict[str, Any],
    seed: int = 0,
) -> dict[str, Any]:
    """A variant's metrics plus calibration, per-class scores, complexity,
    robustness curves and a bootstrap interval of its test macro-F1.

    Args:
        metrics: The variant's test metrics from modeling.
        model: The trained variant.
        model_inputs: The splits it was trained on (for timing predictions).
        test_predictions: Its test predictions with ``confidence``.
        robustness: Its robustness curves (:func:`sweep_robustness`).
        params: ``calibration_bins`` and ``bootstrap_resamples``.
        seed: The project seed (the bootstrap resamples).

    Returns:
        The metrics with ``ece``, ``reliability`` (bins), ``per_class``,
        ``size_bytes`` (pickled model), ``predict_ms_per_sample``,
        ``robustness``, ``macro_f1_ci`` (95 % bootstrap interval) and
        ``bootstrap_macro_f1`` (the resamples' scores, for paired comparisons
        in :func:`collect_metrics`, which drops them).
    """
    if metrics["status"] != "trained":
        return metrics
    correct = (test_predictions["label"] == test_predictions["predicted"]).to_numpy()
    bins = reliability_bins(
        test_predictions["confidence"].to_numpy(), correct, params["calibration_bins"]
    )
    scores = bootstrap_macro_f1(
        test_predictions["label"],
        test_predictions["predicted"],
        resamples=params.get("bootstrap_resamples", 1000),
        seed=seed,
    )
    test_inputs = model_inputs["test"]["inputs"]
    start = time.perf_counter()
    model.predict_proba(test_inputs)
    elapsed = time.perf_counter() - start
    return {
        **metrics,
        "ece": expected_calibration_error(bins),
        "reliability": bins,
        "per_class": per_class_scores(
            test_predictions["label"], test_predictions["predicted"]
        ),
        "size_bytes": len(pickle.dumps(model)),
        "predict_ms_per_sample": round(
            1000 * elapsed / max(1, len(model_inputs["test"]["y"])), 4
        ),
        "robustness": robustness,
        "macro_f1_ci": interval(scores),
        "bootstrap_macro_f1": scores.tolist(),
    }


def collect_metrics(  # noqa: PLR0913, PLR0917 - a node: Kedro passes inputs by name
    data_summary: dict[str, Any],
    contacts: pd.DataFrame,
    environment: str,
    alignment_metrics: dict[str, Any],
    robustness_params: dict[str, Any],
    reliance_params: dict[str, Any] | None = None,
    **variant_metrics: dict[str, Any],
) -> dict[str, Any]:
    """One key per model variant, plus alignments, data counts, the run
    (environment and data fingerprints) and the verdict.

    Every trained variant of several modalities gets its ``reliance`` on each
    (see :func:`modality_reliance`); ``ignored_modalities`` lists the variants
    that ignore an informative modality. ``fusion_gain_ci`` is the paired
    bootstrap 95 % interval of the gain (the same resampled test rows for both
    models) and ``fusion_gain_significant`` whether it excludes 0.

    With several seeds (``modeling.seeds``), ``fusion_gain_seeds`` holds the
    gain of each seed and its t interval, and the gain is significant only when
    both intervals exclude 0 on the same side.

    ``best_model`` is chosen on the validation split; ``fusion_gain_macro_f1`` is
    the test macro-F1 of the best fusion model minus that of the best unimodal
    model (both picked on validation). Every robustness curve gets its
    ``effective_robustness`` against the same curve of the ``baseline`` variant
    of ``robustness_params`` (left out when the baseline was not trained).

    Returns:
        The run's metrics, saved as versioned JSON.
    """
    resampled = {
        name: entry["bootstrap_macro_f1"]
        for name, entry in variant_metrics.items()
        if "bootstrap_macro_f1" in entry
    }
    variant_metrics = {
        name: {k: v for k, v in entry.items() if k != "bootstrap_macro_f1"}
        for name, entry in variant_metrics.items()
    }
    baseline = (
        trained_variants(variant_metrics)
        .get(robustness_params["baseline"], {})
        .get("robustness", {})
    )
    variant_metrics = {
        name: _with_effective_robustness(entry, baseline)
        for name, entry in variant_metrics.items()
    }
    trained = trained_variants(variant_metrics)

    def best(names):
        names = [n for n in names if n in trained]
        return max(names, key=lambda n: trained[n]["val_macro_f1"]) if names else None

    reliance = modality_reliance(trained, reliance_params or RELIANCE_DEFAULTS)
    variant_metrics = {
        name: {**entry, "reliance": reliance[name]} if name in reliance else entry
        for name, entry in variant_metrics.items()
    }
    unimodal = best([n for n, m in trained.items() if len(m["modalities"]) == 1])
    fused = best([n for n, m in trained.items() if len(m["modalities"]) > 1])
    gain = (
        trained[fused]["macro_f1"] - trained[unimodal]["macro_f1"]
        if unimodal and fused
        else None
    )
    gain_ci = (
        interval(np.subtract(resampled[fused], resampled[unimodal]))
        if gain is not None and fused in resampled and unimodal in resampled
        else None
    )
    seed_gain = (
        seed_gain_interval(trained[fused], trained[unimodal])
        if gain is not None
        else None
    )
    return {
        **variant_metrics,
        "robustness_baseline": robustness_params["baseline"] if baseline else None,
        "alignment": alignment_metrics,
        "data": {k: data_summary[k] for k in ("raw_ids", "outcome", "modalities")},
        "run": {"environment": environment, **data_fingerprints(contacts)},
        "best_model": best(list(trained)),
        "best_unimodal": unimodal,
        "best_fusion": fused,
        "fusion_gain_macro_f1": gain,
        # Paired bootstrap (the same resampled test rows for both models).
        "fusion_gain_ci": gain_ci,
        # The gain seed by seed (None with one seed): see seed_gain_interval.
        "fusion_gain_seeds": seed_gain,
        "fusion_gain_significant": _significant(
            gain_ci, seed_gain["ci"] if seed_gain else None
        ),
        "ignored_modalities": [
            {"variant": name, "modality": modality}
            for name, by_modality in reliance.items()
            for modality, entry in by_modality.items()
            if entry["ignored"]
        ],
    }


def modality_reliance(
    trained: dict[str, dict[str, Any]], params: dict[str, Any]
) -> dict[str, dict[str, dict[str, Any]]]:
    """How much each fusion variant relies on each modality, measured.

    The reliance on a modality is the drop in test macro-F1 when it is blanked
    in every test row (``blanked``). A variant *ignores* a modality when the
    best unimodal model of that modality scores at least ``informative_margin``
    above chance (1 / number of classes), so the modality carries the label,
    yet blanking it costs the variant less than ``min_drop``.

    Returns:
        ``{variant: {modality: {"drop", "blanked_macro_f1", "unimodal",
        "unimodal_macro_f1", "chance", "ignored"}}}`` for the trained variants
        of several modalities.
    """
    unimodal = {}
    for name, entry in trained.items():
        if len(entry["modalities"]) == 1:
            modality = entry["modalities"][0]
            if (
                entry["val_macro_f1"]
                > trained.get(unimodal.get(modality), {"val_macro_f1": -1})[
                    "val_macro_f1"
                ]
            ):
                unimodal[modality] = name
    result = {}
    for name, entry in trained.items():
        if "blanked" not in entry:
            continue
        chance = 1 / max(len(entry.get("per_class") or {}), 1)
        result[name] = {}
        for modality, blanked in entry["blanked"].items():
            drop = entry["macro_f1"] - blanked["macro_f1"]
            alone = unimodal.get(modality)
            alone_f1 = trained[alone]["macro_f1"] if alone else None
            informative = (
                alone_f1 is not None
                and alone_f1 >= chance + params["informative_margin"]
            )
            result[name][modality] = {
                "drop": drop,
                "blanked_macro_f1": blanked["macro_f1"],
                "unimodal": alone,
                "unimodal_macro_f1": alone_f1,
                "chance": chance,
                "ignored": bool(informative and drop < params["min_drop"]),
            }
    return result


def _with_effective_robustness(
    entry: dict[str, Any], baseline: dict[str, Any]
) -> dict[str, Any]:
    """A variant's entry whose robustness curves also hold their effective
    robustness against the baseline's curves of the same imperfection."""
    if not entry.get("robustness"):
        return entry
    curves = {
        name: {
            **curve,
            "effective_robustness": effective_robustness(
                curve["macro_f1"], baseline[name]["macro_f1"]
            ),
        }
        if name in baseline
        else curve
        for name, curve in entry["robustness"].items()
    }
    return {**entry, "robustness": curves}
