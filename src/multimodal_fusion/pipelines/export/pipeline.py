"""Wiring of the export pipeline: the newest model package's networks pruned,
exported to every format of ``params:export`` (LiteRT, ONNX, pruned Keras),
then each format measured on the test split and reported.

Not part of ``__default__``: ``kedro run --pipelines export`` (the newest
``model_package`` and the ``model_inputs`` of the run that made it;
``--load-versions model_package:<version>`` for another package).
"""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    evaluate_exports,
    export_inputs,
    export_model,
    prune_model,
    render_export_report,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                export_inputs,
                ["model_package", "model_inputs"],
                "export_inputs",
                name="export_inputs",
            ),
            Node(
                prune_model,
                ["model_package", "export_inputs", "params:export"],
                "pruned_models",
                name="prune_model",
            ),
            Node(
                export_model,
                ["model_package", "pruned_models", "params:export"],
                "model_exports",
                name="export_model",
            ),
            Node(
                evaluate_exports,
                ["model_package", "model_exports", "export_inputs", "params:export"],
                "export_metrics",
                name="evaluate_exports",
            ),
            Node(
                render_export_report,
                "export_metrics",
                "export_report",
                name="render_export_report",
            ),
        ]
    )
