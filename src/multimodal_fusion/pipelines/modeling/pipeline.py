"""Wiring of the modeling pipeline: model inputs, one alignment pipeline per
alignment method and one training pipeline per model variant, each instantiated
under its own namespace (the variant table is :mod:`multimodal_fusion.variants`).
"""

from kedro.pipeline import Node, Pipeline

from multimodal_fusion.alignment import align_inputs
from multimodal_fusion.training import combine_trained_models, train_classifier
from multimodal_fusion.variants import (
    ALIGNMENTS,
    LATE_MEMBERS,
    VARIANT_INPUTS,
    variant_output,
)

from .nodes import (
    augment_training_split,
    build_model_inputs,
    fit_alignment,
)


def alignment_pipeline() -> Pipeline:
    """Fit and apply one alignment; namespaced once per alignment."""
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
                    "params:engine",
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
        ]
    )
    alignments = [
        Pipeline(
            alignment_pipeline(),
            namespace=alignment,
            inputs={"model_inputs": "model_inputs"},
            outputs={
                "aligned_inputs": aligned_inputs,
                "model": variant_output(alignment, "model"),
            },
            parameters={
                "params:alignment": f"params:modeling.alignments.{alignment}",
                "params:seed": "params:seed",
            },
        )
        for alignment, aligned_inputs in ALIGNMENTS.items()
    ]
    variants = [variant_training(v, source) for v, source in VARIANT_INPUTS.items()]
    return inputs + sum(alignments + variants, Pipeline([]))


def variant_training(variant: str, source: str) -> Pipeline:
    """The node that fits one variant's model, under the variant's namespace: a
    late fusion of trained unimodal variants (LATE_MEMBERS) combines their
    models; any other variant trains its own."""
    members = [
        variant_output(m, "model") for m in LATE_MEMBERS.get(variant, {}).values()
    ]
    if members:
        node = Node(
            combine_trained_models,
            ["model_inputs", *members],
            "model",
            name="combine_trained_models",
        )
    else:
        node = Node(
            train_classifier,
            ["model_inputs", "params:model", "params:seed"],
            "model",
            name="train_classifier",
        )
    return Pipeline(
        [node],
        namespace=variant,
        inputs={"model_inputs": source, **{m: m for m in members}},
        outputs={"model": variant_output(variant, "model")},
        parameters={"params:seed": "params:seed"} if not members else {},
    )
