import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from sklearn.metrics import f1_score

from multimodal_fusion.datasets import AudioClip
from multimodal_fusion.evaluation import trained_variants
from multimodal_fusion.fusion import FusionClassifier, blank_modality
from multimodal_fusion.pipelines.evaluation.nodes import (
    assess_variant,
    collect_metrics,
    sweep_robustness,
)
from multimodal_fusion.pipelines.reporting.nodes import (
    analyse_errors,
    plot_class_balance,
    plot_clip_lengths,
    plot_confusion_matrix,
    plot_model_comparison,
    plot_reliability,
    plot_robustness,
    plot_run_history,
    render_report,
    summarise_history,
    write_summary,
)
from multimodal_fusion.report_html import PALETTE, fmt, human, variant_colour
from multimodal_fusion.robustness.sweeps import relative_robustness
from multimodal_fusion.variants import VARIANT_INPUTS

SIZES = {"train": 10, "val": 5, "test": 5}
SUMMARY = {
    "raw_ids": 22,
    "outcome": {"train": 10, "val": 5, "test": 5, "unlabeled": 1, "rejected": 1},
    "modalities": {"text_and_audio": 18, "text_only": 1, "audio_only": 1},
    "rejected_records": [{"source": "raw_audio", "reason": "silent audio", "count": 1}],
    "classes": {
        "train": {"a": 6, "b": 4},
        "val": {"a": 3, "b": 2},
        "test": {"a": 3, "b": 2},
    },
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
        "n_params": 100,
        "train_seconds": 1.5,
        "ece": 0.1,
        "reliability": [
            {
                "lower": 0.5,
                "upper": 0.6,
                "count": 5,
                "confidence": 0.55,
                "accuracy": 0.6,
            }
        ],
        "per_class": {
            "a": {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
        },
        "size_bytes": 2048,
        "predict_ms_per_sample": 0.25,
        "macro_f1_ci": [macro_f1 - 0.06, macro_f1 + 0.05],
        # Shifted copies of one spread: paired differences are constant.
        "bootstrap_macro_f1": list(np.linspace(-0.05, 0.04, 21) + macro_f1),
        "robustness": {
            "white_noise": _curve([None, 10, 0], [macro_f1, macro_f1 - 0.1, 0.3]),
            "typos": _curve([0.0, 0.5], [macro_f1, macro_f1 - 0.2]),
        },
    }


def _curve(levels, scores):
    return {
        "levels": levels,
        "macro_f1": scores,
        "relative_robustness": relative_robustness(scores),
    }


ROBUSTNESS = {"baseline": "early_fusion"}
CONTACTS = pd.DataFrame(
    {
        "id": ["c1", "c2", "c3"],
        "label": ["a", "b", "a"],
        "split": ["train", "train", "test"],
        "has_text": True,
        "has_audio": [True, False, True],
    }
)


RELIANCE = {"informative_margin": 0.1, "min_drop": 0.01}


def _collect(
    *,
    contacts=CONTACTS,
    environment="local",
    robustness=ROBUSTNESS,
    reliance=None,
    **variants,
):
    """collect_metrics on the shared summary and alignment figures."""
    return collect_metrics(
        SUMMARY, contacts, environment, ALIGNMENT, robustness, reliance, **variants
    )


def _metrics():
    return _collect(
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
    assert metrics["run"]["environment"] == "local"
    assert metrics["run"]["n_train"] == 2


def test_data_fingerprints_change_with_the_records_not_their_order():
    metrics = _metrics()["run"]
    shuffled = CONTACTS.iloc[::-1]
    relabelled = CONTACTS.assign(label=["a", "a", "a"])
    again = _collect(contacts=shuffled, environment="x")["run"]
    other = _collect(contacts=relabelled, environment="x")["run"]
    assert again["data_fingerprint"] == metrics["data_fingerprint"]
    assert other["data_fingerprint"] != metrics["data_fingerprint"]
    assert other["train_fingerprint"] != metrics["train_fingerprint"]


def test_effective_robustness_is_measured_against_the_baseline_variant():
    metrics = _metrics()
    assert metrics["robustness_baseline"] == "early_fusion"
    baseline = metrics["early_fusion"]["robustness"]
    assert baseline["white_noise"]["effective_robustness"] == pytest.approx(0.0)
    text = metrics["text_only"]["robustness"]["white_noise"]
    # text_only: 0.70, 0.60, 0.30; the baseline moved to 0.70: 0.70, 0.60, 0.10.
    assert text["effective_robustness"] == pytest.approx(
        relative_robustness([0.0, 0.0, 0.2])
    )
    assert "robustness" not in metrics["aligned_fusion"]
    without_baseline = _collect(
        robustness={"baseline": "late_fusion"},
        text=_variant(["text"], 0.7, 0.7),
    )
    assert without_baseline["robustness_baseline"] is None
    curve = without_baseline["text"]["robustness"]["typos"]
    assert "effective_robustness" not in curve


def _fused(macro_f1, blanked_text, blanked_audio):
    entry = _variant(["text", "audio"], macro_f1, macro_f1)
    entry["per_class"] = {c: entry["per_class"]["a"] for c in "abcd"}  # chance 0.25
    entry["blanked"] = {
        "text": {"accuracy": blanked_text, "macro_f1": blanked_text},
        "audio": {"accuracy": blanked_audio, "macro_f1": blanked_audio},
    }
    return entry


def test_a_fusion_variant_that_ignores_an_informative_modality_is_flagged():
    metrics = _collect(
        reliance=RELIANCE,
        text_only=_variant(["text"], 0.80, 0.80),
        audio_only=_variant(["audio"], 0.70, 0.70),  # well above chance (0.25)
        gated_fusion=_fused(0.85, blanked_text=0.30, blanked_audio=0.85),
        early_fusion=_fused(0.90, blanked_text=0.60, blanked_audio=0.75),
    )
    gated = metrics["gated_fusion"]["reliance"]
    assert gated["text"]["drop"] == pytest.approx(0.55)
    assert gated["audio"]["drop"] == pytest.approx(0.0)
    assert gated["audio"]["unimodal"] == "audio_only"
    assert gated["audio"]["chance"] == 0.25
    assert metrics["ignored_modalities"] == [
        {"variant": "gated_fusion", "modality": "audio"}
    ]
    assert not any(e["ignored"] for e in metrics["early_fusion"]["reliance"].values())
    assert "reliance" not in metrics["text_only"]
    summary = write_summary(metrics, SUMMARY)
    assert "gated_fusion text +0.550, audio +0.000" in summary
    assert "`gated_fusion` ignores its audio input" in summary


def test_the_fusion_gain_has_a_paired_bootstrap_interval():
    text, fused = _variant(["text"], 0.70, 0.72), _fused(0.80, 0.5, 0.6)
    noisy = np.random.default_rng(0).normal(0, 0.05, 200)
    text["bootstrap_macro_f1"] = list(0.70 + noisy)
    fused["bootstrap_macro_f1"] = list(0.80 + noisy + 0.01 * noisy)  # paired
    metrics = _collect(
        text_only=text,
        early_fusion=fused,
    )
    low, high = metrics["fusion_gain_ci"]
    assert 0.09 < low < 0.10 < high < 0.11  # pairing cancels the shared noise
    assert metrics["fusion_gain_significant"]
    assert "bootstrap_macro_f1" not in metrics["text_only"]
    assert "bootstrap_macro_f1" in text  # the inputs are left alone
    assert "95 % paired bootstrap interval +0.09" in write_summary(metrics, SUMMARY)

    fused["bootstrap_macro_f1"] = list(0.70 + noisy[::-1])  # unpaired, no gain
    fused["macro_f1"] = 0.71
    metrics = _collect(
        text_only=text,
        early_fusion=fused,
    )
    assert metrics["fusion_gain_ci"][0] < 0 < metrics["fusion_gain_ci"][1]
    assert "within noise" in write_summary(metrics, SUMMARY)


def _seeded(entry, seeds, scores):
    entry = {**entry, "macro_f1": scores[0]}
    entry["seed_spread"] = {
        "seeds": seeds,
        "macro_f1": scores,
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else None,
    }
    return entry


def test_the_fusion_gain_is_checked_across_seeds():
    noisy = np.random.default_rng(0).normal(0, 0.01, 200)
    text = _variant(["text"], 0.70, 0.72)
    fused = _variant(["text", "audio"], 0.80, 0.80)
    text["bootstrap_macro_f1"] = list(0.70 + noisy)
    fused["bootstrap_macro_f1"] = list(0.80 + noisy)  # bootstrap: significant
    seeds = [42, 43, 44]

    steady = _collect(
        text_only=_seeded(text, seeds, [0.70, 0.71, 0.69]),
        early_fusion=_seeded(fused, seeds, [0.80, 0.79, 0.82]),
    )
    gain = steady["fusion_gain_seeds"]
    assert gain["seeds"] == seeds
    assert gain["gains"] == pytest.approx([0.10, 0.08, 0.13])
    assert gain["mean"] == pytest.approx(0.10333, abs=1e-4)
    # t(0.975, 2) = 4.303: mean ± 4.303 * std / sqrt(3)
    half = 4.3027 * np.std([0.10, 0.08, 0.13], ddof=1) / np.sqrt(3)
    assert gain["ci"] == pytest.approx([0.10333 - half, 0.10333 + half], abs=1e-3)
    assert steady["fusion_gain_significant"]
    summary = write_summary(steady, SUMMARY)
    assert "across 3 seeds +0.103 ± 0.025" in summary
    assert "0.803 ± 0.015 (3 seeds)" in summary  # the fusion row's spread
    assert ", significant." in summary

    # The project seed's run gains 0.10, but the other seeds lose: noise.
    flipping = _collect(
        text_only=_seeded(text, seeds, [0.70, 0.80, 0.78]),
        early_fusion=_seeded(fused, seeds, [0.80, 0.76, 0.77]),
    )
    assert flipping["fusion_gain_ci"][0] > 0  # the bootstrap alone says yes
    assert flipping["fusion_gain_seeds"]["ci"][0] < 0
    assert flipping["fusion_gain_significant"] is False
    assert "within seed noise" in write_summary(flipping, SUMMARY)

    one = _collect(
        text_only=_seeded(text, [42], [0.70]),
        early_fusion=_seeded(fused, [42], [0.80]),
    )
    assert one["fusion_gain_seeds"] is None
    assert one["fusion_gain_significant"]
    assert "One training seed" in write_summary(one, SUMMARY)


def test_an_uninformative_modality_may_be_ignored():
    metrics = _collect(
        reliance=RELIANCE,
        text_only=_variant(["text"], 0.80, 0.80),
        audio_only=_variant(["audio"], 0.30, 0.30),  # near chance (0.25)
        gated_fusion=_fused(0.80, blanked_text=0.30, blanked_audio=0.80),
    )
    assert metrics["ignored_modalities"] == []


def test_single_modality_runs_report_no_gain():
    metrics = _collect(
        audio_only=_variant(["audio"], 0.9, 0.9),
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
    assert "Fusion buys +0.200 macro-F1 over the best single modality" in text
    assert "1 × raw_audio: silent audio" in text
    assert "cca_alignment (cca, 4 dims, 5 test pairs)" in text
    assert "recall@1 0.400 (random 0.200)" in text
    assert "deep_alignment" not in text


def test_summary_and_report_say_which_rows_a_fusion_variant_routes():
    metrics = _metrics()
    metrics["early_fusion"]["routes"] = {
        "routes": {"text+audio": "fused", "text": "fused", "audio": "audio"},
        "validation_macro_f1": {
            "text+audio": {"fused": 0.91, "text": 0.7, "audio": 0.7},
            "text": {"fused": 0.72, "text": 0.70},
            "audio": {"fused": 0.40, "audio": 0.70},
        },
    }
    sentence = (
        "early_fusion: rows with audio go to audio_only "
        "(validation macro-F1 0.700, fused 0.400)."
    )
    assert sentence in _section(_report(metrics), "models")
    summary = write_summary(metrics, SUMMARY)
    assert (
        "Floor (rows a unimodal model answers, chosen on validation): "
        "early_fusion: audio → audio_only." in summary
    )
    # A variant whose rows all stay on its network gets no sentence.
    metrics["early_fusion"]["routes"]["routes"]["audio"] = "fused"
    assert "Floor" not in write_summary(metrics, SUMMARY)
    assert "go to" not in _section(_report(metrics), "models")


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


def _toy_inputs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.array(["a", "b"])[rng.integers(0, 2, n)]
    audio = rng.normal(size=(n, 3)).astype(np.float32)
    audio[:, 0] += np.where(y == "a", 2.0, -2.0)
    part = {
        "ids": np.array([f"c{i:02d}" for i in range(n)]),
        "y": y,
        "inputs": {"audio": audio},
        "has": {"audio": np.ones(n, bool)},
    }
    return {"train": part, "val": part, "test": part}


def test_assess_variant_adds_calibration_per_class_and_complexity():
    inputs = _toy_inputs()
    model = FusionClassifier(
        modalities=["audio"], epochs=5, branch_units=8, fusion_units=4
    ).fit(
        inputs["train"]["inputs"],
        inputs["train"]["y"],
        validation=(inputs["val"]["inputs"], inputs["val"]["y"]),
    )
    proba = model.predict_proba(inputs["test"]["inputs"])
    predictions = pd.DataFrame(
        {
            "id": inputs["test"]["ids"],
            "label": inputs["test"]["y"],
            "predicted": model.classes_[proba.argmax(1)],
            "confidence": proba.max(1),
        }
    )
    metrics = {"status": "trained", "n_params": model.n_params_}
    curves = {"typos": _curve([0.0, 0.5], [0.9, 0.8])}
    assessed = assess_variant(
        metrics, model, inputs, predictions, curves, {"calibration_bins": 10}
    )
    assert sum(b["count"] for b in assessed["reliability"]) == 60
    assert 0 <= assessed["ece"] <= 1
    assert set(assessed["per_class"]) == {"a", "b"}
    assert assessed["size_bytes"] > 1000
    assert assessed["predict_ms_per_sample"] > 0
    assert assessed["robustness"] == curves
    skipped = {"status": "skipped", "reason": "no audio"}
    assert assess_variant(skipped, model, inputs, predictions, {}, {}) == skipped


def test_robustness_plots_only_the_variants_that_read_the_perturbed_modality():
    figure = plot_robustness(_metrics(), "white_noise")
    assert [t.name for t in figure.data] == ["audio_only", "early_fusion"]
    assert list(figure.data[0].x) == ["clean", "10 dB", "0 dB"]
    assert list(figure.data[1].y) == [0.90, pytest.approx(0.80), 0.3]
    typos = plot_robustness(_metrics(), "typos")
    assert [t.name for t in typos.data] == ["text_only", "early_fusion"]
    alone = _collect(audio_only=_variant(["audio"], 0.75, 0.7))
    empty = plot_robustness(alone, "typos")
    assert not empty.data
    assert "no trained model reads text" in empty.layout.annotations[0].text


def test_sweep_scores_every_level_and_blanks_the_chosen_share_of_rows():
    inputs = _toy_inputs(n=80)
    test = inputs["test"]
    model = FusionClassifier(
        modalities=["audio"], audio_frames=False, epochs=30, learning_rate=0.01
    ).fit(test["inputs"], test["y"], validation=(test["inputs"], test["y"]))
    # A perturbed copy that hides the class signal: scores drop to chance.
    scrambled = {**test, "inputs": {"audio": test["inputs"]["audio"][::-1].copy()}}
    sweep = {"clean": test, "white_noise@0": scrambled}
    params = {
        "noise": ["white_noise"],
        "snr_db": [0],
        "text": [],
        "text_rates": [],
        "missing": ["audio_missing"],
        "missing_rates": [0.5, 1.0],
    }
    curves = sweep_robustness(model, sweep, params, seed=0)
    clean = f1_score(test["y"], model.predict(test["inputs"]), average="macro")
    noise, missing = curves["white_noise"], curves["audio_missing"]
    assert noise["levels"] == [None, 0]
    assert noise["macro_f1"][0] == pytest.approx(clean)
    assert clean > 0.9
    assert noise["macro_f1"][1] < 0.75
    assert noise["relative_robustness"] == pytest.approx(sum(noise["macro_f1"]) / 2)
    assert missing["macro_f1"][0] == noise["macro_f1"][0]
    blank = blank_modality(test["inputs"], "audio")
    everything = f1_score(test["y"], model.predict(blank), average="macro")
    assert missing["macro_f1"][2] == pytest.approx(everything)
    assert everything < missing["macro_f1"][1] < clean  # half the rows blanked
    assert sweep_robustness(model, sweep, params, seed=0) == curves  # reproducible


def _predictions(predicted):
    return pd.DataFrame(
        {
            "id": ["c1", "c2", "c3", "c4"],
            "label": ["a", "a", "b", "b"],
            "predicted": predicted,
            "confidence": 0.9,
        }
    )


def test_error_analysis_shows_confusions_with_every_variants_answer():
    contacts = pd.DataFrame(
        {
            "id": ["c1", "c2", "c3", "c4"],
            "text": ["[EMAIL] help", "", "x", "y"],
            "has_audio": [True, False, True, True],
        }
    )
    analysis = analyse_errors(
        _metrics(),
        contacts,
        {"top_confusions": 2, "examples_per_confusion": 1},
        {"variant": None},
        early_fusion=_predictions(["b", "b", "b", "b"]),
        text_only=_predictions(["a", "a", "b", "a"]),
        aligned_fusion=pd.DataFrame(columns=["id", "label", "predicted"]),
    )
    assert analysis["model"] == "early_fusion"
    [confusion] = analysis["confusions"]
    assert (confusion["label"], confusion["predicted"], confusion["count"]) == (
        "a",
        "b",
        2,
    )
    assert confusion["examples"] == [
        {
            "id": "c1",
            "text": "[EMAIL] help",
            "has_audio": True,
            "predictions": {"text_only": "a", "early_fusion": "b"},
        }
    ]


def test_history_has_a_row_per_saved_run():
    history = {
        "v1": {
            "best_model": "text_only",
            "fusion_gain_macro_f1": None,
            "text_only": {"macro_f1": 0.5},
        },
        "v2": _metrics(),
    }
    rows = summarise_history(history, _metrics())
    assert [r["version"] for r in rows] == ["v1", "v2"]
    assert rows[0]["text_only.macro_f1"] == 0.5
    assert rows[1]["early_fusion.macro_f1"] == 0.9
    figure = plot_run_history(rows)
    assert {t.name for t in figure.data} >= {"text_only", "early_fusion"}


def _report(metrics, parameters=None):
    """render_report on ``metrics`` with every input it needs, small."""
    rows = summarise_history({"v1": metrics}, metrics)
    clip = AudioClip(np.zeros(800, np.float32) + 0.1, 8000)
    errors = {
        "model": metrics["best_model"],
        "confusions": [
            {
                "label": "a",
                "predicted": "b",
                "count": 2,
                "examples": [
                    {
                        "id": "c1",
                        "text": "<b>hi</b>",
                        "has_audio": True,
                        "predictions": {"text_only": "a"},
                    }
                ],
            }
        ],
    }
    parameters = parameters or {"seed": 42}
    return render_report(
        metrics=metrics,
        data_summary=SUMMARY,
        error_analysis=errors,
        run_history=rows,
        parameters=parameters,
        clean_audio={"c1": lambda: clip},
        model_comparison_plot=plot_model_comparison(metrics),
        robustness_white_noise_plot=plot_robustness(metrics, "white_noise"),
        robustness_typos_plot=plot_robustness(metrics, "typos"),
        reliability_plot=plot_reliability(metrics, parameters.get("packaging")),
        class_balance_plot=plot_class_balance(SUMMARY),
        clip_lengths_plot=plot_clip_lengths(pd.DataFrame({"duration_s": [1.0, 2.0]})),
        run_history_plot=plot_run_history(rows),
        **{
            f"{name}_test_predictions": _predictions(["a", "b", "b", "b"])
            for name in trained_variants(metrics)
        },
    )


def _section(page: str, anchor: str) -> str:
    return re.search(f'<section id="{anchor}">.*?</section>', page, re.S).group(0)


def test_html_report_is_self_contained_and_matches_the_metrics():
    metrics = _metrics()
    page = _report(metrics)
    markup = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S)
    assert "http" not in markup  # no external resource: opens offline
    assert "<script src" not in page
    assert page.count('class="plot"') == 7
    assert "data:audio/flac;base64," in page
    assert "&lt;b&gt;hi&lt;/b&gt;" in page  # text escaped
    models = _section(page, "models")
    for name in ("text_only", "audio_only", "early_fusion"):
        m = metrics[name]
        row = re.search(f"<tr><td>{name}</td>.*?</tr>", models).group(0)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert cells[3:8] == [
            fmt(m["accuracy"]),
            fmt(m["macro_f1"]),
            fmt(m["val_macro_f1"]),
            fmt(m["ece"]),
            f"{fmt(m['macro_f1_ci'][0])}–{fmt(m['macro_f1_ci'][1])}",
        ]
    assert fmt(metrics["fusion_gain_macro_f1"]) in page
    robustness = _section(page, "robustness")
    tables = dict(
        re.findall(r"<h3>(.*?)</h3>.*?(<table>.*?</table>)", robustness, re.S)
    )
    assert set(tables) == {"white noise", "typos"}
    for name, reads_audio in [
        ("text_only", False),
        ("audio_only", True),
        ("early_fusion", True),
    ]:
        curve = metrics[name]["robustness"]["white_noise"]
        row = re.search(f"<tr><td>{name}</td>.*?</tr>", tables["white noise"]).group(0)
        expected = [
            fmt(curve["macro_f1"][0]),
            fmt(curve["macro_f1"][-1]),
            fmt(curve["relative_robustness"]),
            fmt(curve["effective_robustness"]),
        ]
        assert re.findall(r"<td[^>]*>(.*?)</td>", row)[1:] == (
            expected if reads_audio else ["n/a"] * 4
        ), name
    complexity = _section(page, "complexity")
    assert '<td class="num">2.0 KB</td><td class="num">3</td>' in complexity
    assert '<td class="num">1.5 s</td><td class="num">0.25 ms</td>' in complexity
    errors = _section(page, "errors")
    assert "Confusion matrix of the chosen model, early_fusion" in errors
    assert '<img class="matrix" alt="confusion matrix of early_fusion"' in errors
    assert "&quot;seed&quot;: 42" in page


def test_the_report_opens_with_the_model_to_use_the_gain_and_the_caveat():
    metrics = _metrics()
    page = _report(metrics)
    lead = page[page.index("<h1>") : page.index("<nav>")]
    assert 'id="answer"' in lead
    assert "Use early_fusion (text + audio): test macro-F1 0.900" in lead
    assert "(95 % interval 0.840–0.950), accuracy 91 % on 5 test contacts" in lead
    low, high = metrics["fusion_gain_ci"]
    assert (
        "Fusion buys +0.200 macro-F1 over the best single modality (early_fusion vs "
        f"text_only, both chosen on validation): 95 % paired bootstrap interval "
        f"{low:+.3f} to {high:+.3f}, significant." in lead
    )
    # 5 test contacts: the interval is wider than 0.1 (the main caveat); then
    # the weakest robustness (white noise, the lowest area of the two curves).
    assert "Main caveat:</b> Small test set: 5 contacts" in lead
    assert (
        "Its weakest robustness is to white noise: macro-F1 0.900 clean, 0.300 at 0 dB"
        in lead
    )
    # Data accounting comes after the models.
    assert page.index('<section id="models">') < page.index('<section id="data">')

    chosen = _report(metrics, {"seed": 1, "packaging": {"variant": "audio_only"}})
    assert "Use audio_only (audio): test macro-F1 0.750" in chosen
    assert (
        "Main caveat:</b> Early_fusion (fusion) is significantly better than the "
        "best single-modality model." in chosen
    )
    assert "Confusion matrix of the chosen model, audio_only" in chosen


def test_an_ignored_modality_and_a_gain_within_noise_lead_the_caveats():
    text = _variant(["text"], 0.80, 0.80)
    gated = _fused(0.81, blanked_text=0.30, blanked_audio=0.81)
    gated["bootstrap_macro_f1"] = list(np.linspace(0.70, 0.90, 21)[::-1])
    metrics = _collect(
        reliance=RELIANCE,
        text_only=text,
        audio_only=_variant(["audio"], 0.70, 0.70),
        gated_fusion=gated,
    )
    page = _report(metrics)
    lead = page[page.index("<h1>") : page.index("<nav>")]
    assert "within noise: the interval includes 0." in lead
    assert "Main caveat:</b> Gated_fusion ignores its audio input" in lead
    assert (
        "Also: Fusion&#x27;s gain is within noise on this test set: text_only" in lead
    )
    row = re.search(r"<tr><td>gated_fusion</td>.*?</tr>", _section(page, "models"))
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0))
    assert cells[8:] == ["1 seed", "0.510", "0.000 (ignored)"]
    text_row = re.search(r"<tr><td>text_only</td>.*?</tr>", page).group(0)
    assert text_row.endswith("<td>–</td><td>–</td></tr>")
    # Another variant ignoring a modality comes after the chosen model's caveats.
    other = _report(metrics, {"packaging": {"variant": "text_only"}})
    lead = other[other.index("<h1>") : other.index("<nav>")]
    assert "Main caveat:</b> Small test set: 5 contacts" in lead
    assert "Also: Gated_fusion ignores its audio input" in lead


def test_parameters_are_folded_without_anchor_keys():
    parameters = {"seed": 42, "_network": {"units": 8}, "early_fusion": {"_x": 1}}
    page = _report(_metrics(), parameters)
    section = _section(page, "parameters")
    assert section.count("<details>") == 1
    assert "&quot;seed&quot;: 42" in section
    assert "_network" not in section
    assert "_x" not in section
    assert "&quot;early_fusion&quot;: {}" in section


def test_run_history_table_has_short_wrapping_columns():
    history = _section(_report(_metrics()), "history")
    header = re.search(r"<tr>(<th>.*?)</tr>", history).group(1)
    assert re.findall(r"<th>(.*?)</th>", header) == [
        "version",
        "env / data",
        "best model",
        "fusion gain",
        "aligned fusion",
        "audio only",
        "early fusion",
        "text only",
    ]
    assert '<div class="wide"><table>' in history


def test_reliability_diagram_shows_the_chosen_and_the_best_unimodal_model():
    metrics = _metrics()
    metrics["early_fusion"]["reliability"].append(
        {"lower": 0.9, "upper": 1.0, "count": 20, "confidence": 0.95, "accuracy": 0.9}
    )
    figure = plot_reliability(metrics, {"variant": None})
    assert [t.name for t in figure.data] == [
        "perfect calibration",
        "early_fusion (ECE 0.100)",
        "text_only (ECE 0.100)",
    ]
    fused = figure.data[1]
    assert list(fused.y) == [pytest.approx(0.6), 0.9]
    assert list(fused.customdata) == [5, 20]  # predictions per bin, on hover
    small, large = fused.marker.size
    assert large > small  # marker area grows with the bin's count
    picked = plot_reliability(metrics, {"variant": "audio_only"})
    assert [t.name for t in picked.data][1:] == [
        "audio_only (ECE 0.100)",
        "text_only (ECE 0.100)",
    ]


def _colours(figure: go.Figure) -> dict[str, set[str]]:
    """Every variant's colours in a figure: per-bar colours of traces over the
    variants (x), else the trace's line and marker colour."""
    found: dict[str, set[str]] = {}
    for trace in figure.data:
        colour = trace.marker.color
        if isinstance(colour, tuple | list):
            for name, c in zip(trace.x, colour, strict=True):
                found.setdefault(name, set()).add(c)
            continue
        name = trace.name.split(" (")[0]
        if name in VARIANT_INPUTS:
            found.setdefault(name, set()).update({colour, trace.line.color})
    return found


def test_each_variant_has_one_colour_in_every_plot():
    metrics = _metrics()
    rows = summarise_history({"v1": metrics, "v2": metrics}, metrics)
    figures = [
        plot_model_comparison(metrics),
        plot_robustness(metrics, "white_noise"),
        plot_robustness(metrics, "typos"),
        plot_reliability(metrics, {}),
        plot_run_history(rows),
    ]
    seen: dict[str, set[str]] = {}
    for figure in figures:
        for name, colours in _colours(figure).items():
            seen.setdefault(name, set()).update(colours)
    # aligned_fusion (skipped) appears in the run history only.
    assert set(seen) == {"text_only", "audio_only", "early_fusion", "aligned_fusion"}
    assert all(colours == {variant_colour(n)} for n, colours in seen.items())
    assert len({variant_colour(n) for n in VARIANT_INPUTS}) == len(VARIANT_INPUTS)
    assert variant_colour("my_variant") == variant_colour("my_variant")
    assert variant_colour("my_variant") in PALETTE


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (
        c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels
    )
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("background", ["#ffffff", "#111111", "#1e1e1e"])
def test_variant_colours_are_legible_on_light_and_dark_backgrounds(background):
    for colour in PALETTE:
        pair = sorted([_luminance(colour), _luminance(background)])
        assert (pair[1] + 0.05) / (pair[0] + 0.05) >= 3, (colour, background)


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (512, "bytes", "512 B"),
        (2048, "bytes", "2.0 KB"),
        (3_400_000, "bytes", "3.4 MB"),
        (0.00025, "seconds", "0.25 ms"),
        (3.44, "seconds", "3.4 s"),
        (72.4, "seconds", "1 m 12 s"),
        (7500, "seconds", "2 h 5 m"),
        (0.925, "percent", "92.5 %"),
        (None, "seconds", "–"),
    ],
)
def test_human_units(value, unit, shown):
    assert human(value, unit) == shown


def test_human_units_reject_an_unknown_unit():
    with pytest.raises(ValueError, match="Unknown unit 'inches'"):
        human(1, "inches")
