import matplotlib.pyplot as plt
import pandas as pd
import plotly.graph_objects as go

from multimodal_fusion.pipelines.reporting.nodes import (
    collect_metrics,
    plot_confusion_matrix,
    plot_model_comparison,
    write_summary,
)

SIZES = {"train": 10, "val": 5, "test": 5}
SUMMARY = {
    "raw_ids": 22,
    "outcome": {"train": 10, "val": 5, "test": 5, "unlabeled": 1, "rejected": 1},
    "modalities": {"text_and_audio": 18, "text_only": 1, "audio_only": 1},
    "rejected_records": [{"source": "raw_audio", "reason": "silent audio", "count": 1}],
}
ALIGNMENT = {
    "cca_alignment": {
        "method": "cca",
        "status": "evaluated",
        "n_components": 4,
        "n_pairs": 5,
        "text_to_audio": {"recall@1": {"model": 0.4, "random": 0.2}},
    },
    "deep_alignment": {
        "method": "contrastive",
        "status": "skipped",
        "reason": "too few rows with both modalities",
    },
}


def _variant(modalities, macro_f1, val):
    return {
        "modalities": modalities,
        "split_sizes": SIZES,
        "status": "trained",
        "accuracy": macro_f1 + 0.01,
        "macro_f1": macro_f1,
        "val_macro_f1": val,
        "epochs": 3,
    }


def _metrics():
    return collect_metrics(
        SUMMARY,
        ALIGNMENT,
        text_only=_variant(["text"], 0.70, 0.72),
        audio_only=_variant(["audio"], 0.75, 0.70),
        early_fusion=_variant(["text", "audio"], 0.90, 0.91),
        aligned_fusion={
            "modalities": ["text", "audio"],
            "split_sizes": SIZES,
            "status": "skipped",
            "reason": "no pairs",
            "accuracy": None,
            "macro_f1": None,
        },
    )


def test_metrics_pick_models_on_validation_and_report_the_gain():
    metrics = _metrics()
    assert metrics["best_unimodal"] == "text_only"  # higher val, lower test
    assert metrics["best_fusion"] == "early_fusion"
    assert metrics["best_model"] == "early_fusion"
    assert metrics["fusion_gain_macro_f1"] == 0.90 - 0.70
    assert metrics["aligned_fusion"]["status"] == "skipped"
    assert metrics["data"]["outcome"]["rejected"] == 1


def test_single_modality_runs_report_no_gain():
    metrics = collect_metrics(
        SUMMARY, ALIGNMENT, audio_only=_variant(["audio"], 0.9, 0.9)
    )
    assert metrics["fusion_gain_macro_f1"] is None
    assert "no fusion comparison" in write_summary(metrics, SUMMARY)


def test_summary_shows_counts_table_and_verdict():
    text = write_summary(_metrics(), SUMMARY)
    assert (
        "22 raw ids: train 10, val 5, test 5, unlabeled 1, rejected 1 (sum 22)" in text
    )
    assert "| early_fusion | text+audio | 0.910 | 0.900 | 0.910 | 3 |" in text
    assert "skipped: no pairs" in text
    assert "gain +0.200" in text
    assert "1 × raw_audio: silent audio" in text
    assert "cca_alignment (cca, 4 dims, 5 test pairs)" in text
    assert "recall@1 0.400 (random 0.200)" in text
    assert "deep_alignment" not in text


def test_plots():
    predictions = pd.DataFrame({"label": ["a", "b", "b"], "predicted": ["a", "a", "b"]})
    figure = plot_confusion_matrix(predictions, _variant(["text"], 0.6, 0.6))
    assert isinstance(figure, plt.Figure)
    assert "macro-F1 0.600" in figure.axes[0].get_title()
    plt.close(figure)
    comparison = plot_model_comparison(_metrics())
    assert isinstance(comparison, go.Figure)
    assert list(comparison.data[1].x) == ["text_only", "audio_only", "early_fusion"]
    assert list(comparison.data[1].y) == [0.70, 0.75, 0.90]
