"""Wiring of the reporting pipeline."""

from kedro.pipeline import Node, Pipeline

from ..modeling.pipeline import VARIANT_INPUTS, variant_metrics
from .nodes import (
    collect_metrics,
    plot_confusion_matrix,
    plot_model_comparison,
    write_summary,
)


def create_pipeline(**kwargs) -> Pipeline:
    confusion_matrices = [
        Pipeline(
            [
                Node(
                    plot_confusion_matrix,
                    ["test_predictions", "metrics"],
                    "confusion_matrix",
                    name="plot_confusion_matrix",
                )
            ],
            namespace=variant,
            inputs={"metrics": variant_metrics(variant)},
        )
        for variant in VARIANT_INPUTS
    ]
    return sum(confusion_matrices, Pipeline([])) + Pipeline(
        [
            Node(
                collect_metrics,
                {
                    "data_summary": "data_summary",
                    "alignment_metrics": "alignment_metrics",
                    **{variant: variant_metrics(variant) for variant in VARIANT_INPUTS},
                },
                "metrics",
                name="collect_metrics",
            ),
            Node(
                plot_model_comparison,
                "metrics",
                "model_comparison",
                name="plot_model_comparison",
            ),
            Node(
                write_summary,
                ["metrics", "data_summary"],
                "summary_report",
                name="write_summary",
            ),
        ]
    )
