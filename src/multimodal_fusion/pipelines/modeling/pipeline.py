"""Wiring of the modeling pipeline: model inputs, one alignment pipeline per
alignment method and one training/evaluation pipeline per model variant, each
instantiated under its own namespace."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    align_inputs,
    augment_training_split,
    build_model_inputs,
    collect_alignment_metrics,
    evaluate_alignment,
    evaluate_classifier,
    fit_alignment,
    perturb_test_split,
    train_classifier,
)

# Alignment (namespace; parameters under ``modeling.alignments.<alignment>``) →
# the dataset it publishes the inputs projected into its common space to.
ALIGNMENTS = {
    "cca_alignment": "cca_aligned_inputs",
    "deep_alignment": "deep_aligned_inputs",
}

# Model variant (namespace) → the model-input dataset it trains on. Its
# hyperparameters live under the same key in parameters_modeling.yml.
VARIANT_INPUTS = {
    "text_only": "model_inputs",
    "audio_only": "model_inputs",
    "early_fusion": "model_inputs",
    "late_fusion": "model_inputs",
    "gated_fusion": "model_inputs",
    "attention_fusion": "model_inputs",
    "aligned_fusion": "cca_aligned_inputs",
    "deep_aligned_fusion": "deep_aligned_inputs",
}


def variant_output(variant: str, name: str) -> str:
    """The dataset a variant (or alignment) publishes its output ``name`` to,
    outside its namespace (``metrics``, ``test_predictions``)."""
    return f"{variant}_{name}"


def sweep_inputs(model_inputs: str) -> str:
    """The dataset holding the robustness sweep's perturbed test splits in the
    space of ``model_inputs`` (the features, or an alignment's common space)."""
    return f"{model_inputs}_sweep"


def alignment_pipeline() -> Pipeline:
    """Fit, apply and evaluate one alignment; namespaced once per alignment."""
    return Pipeline(
        [
            Node(
                fit_alignment,
                ["model_inputs", "params:alignment", "params:seed"],
                "model",
                name="fit_alignment",
            ),
            Node(
                align_inputs,
                ["model_inputs", "model"],
                "aligned_inputs",
                name="align_inputs",
            ),
            Node(
                align_inputs,
                [sweep_inputs("model_inputs"), "model"],
                sweep_inputs("aligned_inputs"),
                name="align_sweep_inputs",
            ),
            Node(
                evaluate_alignment,
                ["aligned_inputs", "model", "params:modeling.recall_at"],
                "metrics",
                name="evaluate_alignment",
            ),
        ]
    )


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
    inputs = Pipeline(
        [
            Node(
                augment_training_split,
                [
                    "contacts",
                    "clean_audio",
                    "feature_path",
                    "params:modeling.augmentation",
                    "params:seed",
                ],
                "augmented_train",
                name="augment_training_split",
            ),
            Node(
                build_model_inputs,
                [
                    "contacts",
                    "text_features",
                    "text_tokens",
                    "audio_features",
                    "augmented_train",
                ],
                "model_inputs",
                name="build_model_inputs",
            ),
            Node(
                perturb_test_split,
                [
                    "contacts",
                    "clean_audio",
                    "model_inputs",
                    "feature_path",
                    "params:robustness",
                    "params:seed",
                ],
                sweep_inputs("model_inputs"),
                name="perturb_test_split",
            ),
        ]
    )
    alignments = [
        Pipeline(
            alignment_pipeline(),
            namespace=alignment,
            inputs={
                "model_inputs": "model_inputs",
                sweep_inputs("model_inputs"): sweep_inputs("model_inputs"),
            },
            outputs={
                "aligned_inputs": aligned_inputs,
                sweep_inputs("aligned_inputs"): sweep_inputs(aligned_inputs),
                "metrics": variant_output(alignment, "metrics"),
            },
            parameters={
                "params:alignment": f"params:modeling.alignments.{alignment}",
                "params:seed": "params:seed",
                "params:modeling.recall_at": "params:modeling.recall_at",
            },
        )
        for alignment, aligned_inputs in ALIGNMENTS.items()
    ]
    collected = Pipeline(
        [
            Node(
                collect_alignment_metrics,
                {
                    alignment: variant_output(alignment, "metrics")
                    for alignment in ALIGNMENTS
                },
                "alignment_metrics",
                name="collect_alignment_metrics",
            )
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
    return inputs + sum(alignments + variants, Pipeline([])) + collected
