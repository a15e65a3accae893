"""Wiring of the modeling pipeline: model inputs, CCA alignment, and one
training/evaluation pipeline instantiated under a namespace per model variant."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    align_inputs,
    build_model_inputs,
    evaluate_alignment,
    evaluate_classifier,
    fit_alignment,
    train_classifier,
)

# Model variant (namespace) → the model-input dataset it trains on. Its
# hyperparameters live under the same key in parameters_modeling.yml.
VARIANT_INPUTS = {
    "text_only": "model_inputs",
    "audio_only": "model_inputs",
    "early_fusion": "model_inputs",
    "aligned_fusion": "aligned_inputs",
}


def variant_output(variant: str, name: str) -> str:
    """The dataset a variant publishes its output ``name`` to, outside its
    namespace (``metrics``, ``test_predictions``)."""
    return f"{variant}_{name}"


def variant_pipeline() -> Pipeline:
    """Train and evaluate one variant; namespaced once per entry of VARIANT_INPUTS."""
    return Pipeline(
        [
            Node(
                train_classifier,
                ["model_inputs", "params:model", "params:seed"],
                "model",
                name="train_classifier",
            ),
            Node(
                evaluate_classifier,
                ["model", "model_inputs"],
                ["metrics", "test_predictions"],
                name="evaluate_classifier",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    shared = Pipeline(
        [
            Node(
                build_model_inputs,
                ["contacts", "text_features", "audio_features"],
                "model_inputs",
                name="build_model_inputs",
            ),
            Node(
                fit_alignment,
                ["model_inputs", "params:modeling.cca", "params:seed"],
                "cca_alignment",
                name="fit_alignment",
            ),
            Node(
                align_inputs,
                ["model_inputs", "cca_alignment"],
                "aligned_inputs",
                name="align_inputs",
            ),
            Node(
                evaluate_alignment,
                ["aligned_inputs", "cca_alignment", "params:modeling.recall_at"],
                "alignment_metrics",
                name="evaluate_alignment",
            ),
        ]
    )
    variants = [
        Pipeline(
            variant_pipeline(),
            namespace=variant,
            inputs={"model_inputs": source},
            outputs={
                name: variant_output(variant, name)
                for name in ("metrics", "test_predictions")
            },
            parameters={"params:seed": "params:seed"},
        )
        for variant, source in VARIANT_INPUTS.items()
    ]
    return shared + sum(variants, Pipeline([]))
