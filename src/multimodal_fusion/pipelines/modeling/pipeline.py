"""Wiring of the modeling pipeline: model inputs, one alignment pipeline per
alignment method and one training pipeline per model variant, each instantiated
under its own namespace (the variant table is :mod:`multimodal_fusion.variants`).
"""

from kedro.pipeline import Node, Pipeline

from multimodal_fusion.alignment import align_inputs
from multimodal_fusion.training import combine_trained_seeds, train_seeds
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
    """The node that fits one variant's model once per seed of
    ``modeling.seeds``, under the variant's namespace: a late fusion of trained
    unimodal variants (LATE_MEMBERS) combines their models seed by seed; any
    other variant trains its own. Outputs ``model`` (the project seed's) and
    ``seed_models`` (the other seeds')."""
    members = list(LATE_MEMBERS.get(variant, {}).values())
    member_inputs = [
        variant_output(m, name) for name in ("model", "seed_models") for m in members
    ]
    if members:
        node = Node(
            combine_trained_seeds,
            ["model_inputs", *member_inputs],
            ["model", "seed_models"],
            name="combine_trained_models",
        )
    else:
        node = Node(
            train_seeds,
            ["model_inputs", "params:model", "params:seed", "params:modeling.seeds"],
            ["model", "seed_models"],
            name="train_classifier",
        )
    return Pipeline(
        [node],
        namespace=variant,
        inputs={"model_inputs": source, **{m: m for m in member_inputs}},
        outputs={
            name: variant_output(variant, name) for name in ("model", "seed_models")
        },
        parameters=(
            {}
            if members
            else {
                "params:seed": "params:seed",
                "params:modeling.seeds": "params:modeling.seeds",
            }
        ),
    )
