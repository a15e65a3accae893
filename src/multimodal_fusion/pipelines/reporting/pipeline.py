"""Wiring of the reporting pipeline: a confusion matrix per variant (namespaced
like the variants), then plots, error analysis, run history, the Markdown and
HTML reports, and the model package of the chosen model."""

from kedro.pipeline import Node, Pipeline

from multimodal_fusion.pipelines import named_partial
from multimodal_fusion.robustness.sweeps import MISSING, NOISES, TEXT_CORRUPTIONS
from multimodal_fusion.variants import ALIGNMENTS, VARIANT_INPUTS, variant_output

from .nodes import (
    analyse_errors,
    package_model,
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

# Every imperfection the sweeps can apply; each gets a robustness_<name> plot.
IMPERFECTIONS = (*NOISES, *TEXT_CORRUPTIONS, *MISSING)
PLOTS = (
    "model_comparison",
    *(f"robustness_{name}" for name in IMPERFECTIONS),
    "reliability",
    "class_balance",
    "clip_lengths",
    "run_history",
)


def confusion_matrix(variant: str) -> Pipeline:
    """The confusion matrix of one variant's test predictions, in its namespace."""
    return Pipeline(
        [
            Node(
                plot_confusion_matrix,
                ["test_predictions", "metrics"],
                "confusion_matrix",
                name="plot_confusion_matrix",
            )
        ],
        namespace=variant,
        inputs={
            "metrics": variant_output(variant, "metrics"),
            "test_predictions": variant_output(variant, "test_predictions"),
        },
    )


def create_pipeline(**kwargs) -> Pipeline:
    variants = sum((confusion_matrix(v) for v in VARIANT_INPUTS), Pipeline([]))
    predictions = {v: variant_output(v, "test_predictions") for v in VARIANT_INPUTS}
    return variants + Pipeline(
        [
            Node(
                plot_model_comparison,
                "metrics",
                "model_comparison_plot",
                name="plot_model_comparison",
            ),
            *(
                Node(
                    named_partial(plot_robustness, imperfection=name),
                    "metrics",
                    f"robustness_{name}_plot",
                    name=f"plot_robustness_{name}",
                )
                for name in IMPERFECTIONS
            ),
            Node(
                plot_reliability,
                ["metrics", "params:packaging"],
                "reliability_plot",
                name="plot_reliability",
            ),
            Node(
                plot_class_balance,
                "data_summary",
                "class_balance_plot",
                name="plot_class_balance",
            ),
            Node(
                plot_clip_lengths,
                "audio_index",
                "clip_lengths_plot",
                name="plot_clip_lengths",
            ),
            Node(
                analyse_errors,
                {
                    "metrics": "metrics",
                    "contacts": "contacts",
                    "params": "params:reporting",
                    "packaging": "params:packaging",
                    **predictions,
                },
                "error_analysis",
                name="analyse_errors",
            ),
            Node(
                summarise_history,
                ["metrics_history", "metrics"],
                "run_history",
                name="summarise_history",
            ),
            Node(
                plot_run_history,
                "run_history",
                "run_history_plot",
                name="plot_run_history",
            ),
            Node(
                write_summary,
                ["metrics", "data_summary"],
                "summary_report",
                name="write_summary",
            ),
            Node(
                render_report,
                {
                    "metrics": "metrics",
                    "data_summary": "data_summary",
                    "error_analysis": "error_analysis",
                    "run_history": "run_history",
                    "parameters": "parameters",
                    "clean_audio": "clean_audio",
                    **{f"{plot}_plot": f"{plot}_plot" for plot in PLOTS},
                    # The chosen model's confusion matrix is drawn from these.
                    **{f"{v}_test_predictions": p for v, p in predictions.items()},
                },
                "report",
                name="render_report",
            ),
            Node(
                package_model,
                {
                    "metrics": "metrics",
                    "feature_path": "feature_path",
                    "contacts": "contacts",
                    "audio_index": "audio_index",
                    "parameters": "parameters",
                    "params": "params:packaging",
                    **{
                        variant_output(name, "model"): variant_output(name, "model")
                        for name in (*VARIANT_INPUTS, *ALIGNMENTS)
                    },
                    **{f"{v}_test_predictions": p for v, p in predictions.items()},
                },
                "model_package",
                name="package_model",
            ),
        ]
    )
