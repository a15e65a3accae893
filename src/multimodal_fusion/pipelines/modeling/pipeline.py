"""Wiring of the modeling pipeline: model inputs, one alignment pipeline per
alignment method and one training pipeline per model variant, each instantiated
under its own namespace (the variant table is :mod:`multimodal_fusion.variants`).
"""

from kedro.pipeline import Node, Pipeline

from multimodal_fusion.alignment import align_inputs
from multimodal_fusion.training import (
    combine_trained_seeds,
    route_trained_seeds,
    train_seeds,
)
from multimodal_fusion.variants import (
    ALIGNMENTS,
    LATE_MEMBERS,
    ROUTED,
    UNIMODAL,
    VARIANT_INPUTS,
    variant_alignment,
    variant_output,
)

from .nodes import (
    augment_training_split,
    build_model_inputs,
    fit_alignment,
)

# The floor node's unimodal models (its argument → the dataset): ``text_model``,
# ``text_seed_models``, ``audio_model``, ``audio_seed_models``.
FLOOR_MODELS = {
    f"{modality}_{name}": variant_output(variant, name)
    for modality, variant in UNIMODAL.items()
    for name in ("model", "seed_models")
}


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
    other variant trains its own. A variant of several modalities (ROUTED) then
    gets the unimodal models as its floor (``route_to_unimodal``). Outputs
    ``model`` (the project seed's) and ``seed_models`` (the other seeds')."""
    routed = variant in ROUTED
    trained = ["network", "seed_networks"] if routed else ["model", "seed_models"]
    members = list(LATE_MEMBERS.get(variant, {}).values())
    member_inputs = [
        variant_output(m, name) for name in ("model", "seed_models") for m in members
    ]
    inputs = {"model_inputs": source, **{m: m for m in member_inputs}}
    outputs = {name: variant_output(variant, name) for name in ("model", "seed_models")}
    parameters = {}
    if members:
        nodes = [
            Node(
                combine_trained_seeds,
                ["model_inputs", *member_inputs],
                trained,
                name="combine_trained_models",
            )
        ]
    else:
        nodes = [
            Node(
                train_seeds,
                [
                    "model_inputs",
                    "params:model",
                    "params:seed",
                    "params:modeling.seeds",
                ],
                trained,
                name="train_classifier",
            )
        ]
        parameters |= {p: p for p in ("params:seed", "params:modeling.seeds")}
    if routed:
        nodes.append(floor_node(variant))
        inputs |= {"raw_model_inputs": "model_inputs", **FLOOR_MODELS}
        alignment = variant_alignment(variant)
        if alignment:
            inputs["alignment"] = variant_output(alignment, "model")
        outputs |= {name: variant_output(variant, name) for name in trained}
        parameters["params:modeling.unimodal_fallback"] = (
            "params:modeling.unimodal_fallback"
        )
    return Pipeline(
        nodes,
        namespace=variant,
        inputs=inputs,
        outputs=outputs,
        parameters=parameters,
    )


def floor_node(variant: str) -> Node:
    """Wraps a variant's networks (every seed's) with the unimodal models as
    their floor; the inputs are named inside the variant's namespace."""
    return Node(
        route_trained_seeds,
        {
            "model_inputs": "raw_model_inputs",
            "fallback": "params:modeling.unimodal_fallback",
            "network": "network",
            "seed_networks": "seed_networks",
            **{name: name for name in FLOOR_MODELS},
            **({"alignment": "alignment"} if variant_alignment(variant) else {}),
        },
        ["model", "seed_models"],
        name="route_to_unimodal",
    )
