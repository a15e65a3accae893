import numpy as np
import pandas as pd
import pytest

from multimodal_fusion.evaluation import (
    expected_calibration_error,
    per_class_scores,
    reliability_bins,
    top_confusions,
)


def test_reliability_bins_and_ece():
    confidence = np.array([0.95, 0.95, 0.55, 0.55, 0.55, 0.55])
    correct = np.array([True, True, True, False, False, False])
    bins = reliability_bins(confidence, correct, n_bins=10)
    assert [(b["lower"], b["count"], b["accuracy"]) for b in bins] == [
        (pytest.approx(0.5), 4, 0.25),
        (pytest.approx(0.9), 2, 1.0),
    ]
    # 4/6 * |0.55 - 0.25| + 2/6 * |0.95 - 1.0|
    assert expected_calibration_error(bins) == pytest.approx(0.2 + 0.05 / 3)


def test_perfectly_calibrated_predictions_have_zero_ece():
    confidence = np.array([1.0, 1.0, 0.5, 0.5])
    correct = np.array([True, True, True, False])
    assert expected_calibration_error(reliability_bins(confidence, correct, 4)) == 0
    assert expected_calibration_error([]) == 0.0


def test_per_class_scores():
    scores = per_class_scores(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert scores["a"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2,
    }
    assert scores["b"]["precision"] == pytest.approx(2 / 3)


def test_top_confusions_orders_by_count_then_names():
    predictions = pd.DataFrame(
        {
            "label": ["a", "a", "a", "b", "c", "c"],
            "predicted": ["b", "b", "a", "c", "a", "c"],
        }
    )
    assert top_confusions(predictions, 2) == [
        {"label": "a", "predicted": "b", "count": 2},
        {"label": "b", "predicted": "c", "count": 1},
    ]


def test_bootstrap_macro_f1_matches_scikit_learn_on_each_resample():
    from sklearn.metrics import f1_score

    from multimodal_fusion.evaluation import bootstrap_macro_f1, interval

    rng = np.random.default_rng(0)
    labels = rng.choice(list("abcd"), 60)
    predicted = np.where(rng.random(60) < 0.7, labels, rng.choice(list("abce"), 60))
    scores = bootstrap_macro_f1(labels, predicted, resamples=50, seed=3)
    draws = np.random.default_rng([3, 4]).integers(0, 60, (50, 60))
    expected = [
        f1_score(labels[d], predicted[d], average="macro", zero_division=0)
        for d in draws
    ]
    np.testing.assert_allclose(scores, expected, atol=1e-12)
    again = bootstrap_macro_f1(labels, predicted, resamples=50, seed=3)
    np.testing.assert_array_equal(scores, again)
    low, high = interval(scores)
    assert low < f1_score(labels, predicted, average="macro") < high
