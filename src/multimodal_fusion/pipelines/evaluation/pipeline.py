"""Wiring of the evaluation pipeline: the perturbed test splits, then per
alignment its retrieval scores and per variant its test predictions, robustness
sweep and assessment (namespaced like in modeling), then ``metrics``.

Its free inputs are persisted (models, model inputs, the feature path, the
contacts and clips), so it runs alone after one full run.
"""

from kedro.pipeline import Node, Pipeline

from multimodal_fusion.variants import (
    ALIGNMENTS,
    VARIANT_INPUTS,
    sweep_inputs,
    variant_output,
)

from .nodes import (
    assess_variant,
    collect_alignment_metrics,
    collect_metrics,
    evaluate_alignment,
    evaluate_classifier,
    perturb_test_split,
    sweep_robustness,
)


def alignment_evaluation(alignment: str, aligned_inputs: str) -> Pipeline:
    """Scores retrieval, in the alignment's namespace."""
    return Pipeline(
        [
            Node(
                evaluate_alignment,
                ["aligned_inputs", "model", "params:modeling.recall_at"],
                "metrics",
                name="evaluate_alignment",
            ),
        ],
        namespace=alignment,
        inputs={
            "aligned_inputs": aligned_inputs,
            "model": variant_output(alignment, "model"),
        },
        outputs={"metrics": variant_output(alignment, "metrics")},
        parameters={"params:modeling.recall_at": "params:modeling.recall_at"},
    )


def variant_evaluation(variant: str) -> Pipeline:
    """Test predictions, robustness sweep and assessment of one variant, in its
    namespace. Every variant's model reads the model inputs (an aligned
    variant's model projects them itself, see multimodal_fusion.routing)."""
    model_inputs = "model_inputs"
    return Pipeline(
        [
            Node(
                evaluate_classifier,
                ["model", "model_inputs", "seed_models"],
                ["metrics", "test_predictions"],
                name="evaluate_classifier",
            ),
            Node(
                sweep_robustness,
                ["model", "sweep_inputs", "params:robustness", "params:seed"],
                "robustness",
                name="sweep_robustness",
            ),
            Node(
                assess_variant,
                [
                    "metrics",
                    "model",
                    "model_inputs",
                    "test_predictions",
                    "robustness",
                    "params:reporting",
                    "params:seed",
                ],
                "assessment",
                name="assess_variant",
            ),
        ],
        namespace=variant,
        inputs={
            "model": variant_output(variant, "model"),
            "seed_models": variant_output(variant, "seed_models"),
            "model_inputs": model_inputs,
            "sweep_inputs": sweep_inputs(model_inputs),
        },
        outputs={
            name: variant_output(variant, name)
            for name in ("metrics", "test_predictions", "assessment")
        },
        parameters={
            "params:reporting": "params:reporting",
            "params:robustness": "params:robustness",
            "params:seed": "params:seed",
        },
    )


def create_pipeline(**kwargs) -> Pipeline:
    sweep = Pipeline(
        [
            Node(
                perturb_test_split,
                [
                    "contacts",
                    "clean_audio",
                    "model_inputs",
                    "feature_path",
                    "params:robustness",
                    "params:seed",
                    "params:engine",
                ],
                sweep_inputs("model_inputs"),
                name="perturb_test_split",
            )
        ]
    )
    alignments = sum(
        (alignment_evaluation(a, inputs) for a, inputs in ALIGNMENTS.items()),
        Pipeline([]),
    )
    variants = sum(
        (variant_evaluation(v) for v in VARIANT_INPUTS),
        Pipeline([]),
    )
    collected = Pipeline(
        [
            Node(
                collect_alignment_metrics,
                {a: variant_output(a, "metrics") for a in ALIGNMENTS},
                "alignment_metrics",
                name="collect_alignment_metrics",
            ),
            Node(
                collect_metrics,
                {
                    "data_summary": "data_summary",
                    "contacts": "contacts",
                    "environment": "params:environment",
                    "alignment_metrics": "alignment_metrics",
                    "robustness_params": "params:robustness",
                    "reliance_params": "params:reporting.reliance",
                    **{v: variant_output(v, "assessment") for v in VARIANT_INPUTS},
                },
                "metrics",
                name="collect_metrics",
            ),
        ]
    )
    return sweep + alignments + variants + collected
