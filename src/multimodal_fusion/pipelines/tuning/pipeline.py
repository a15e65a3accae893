"""Wiring of the tuning pipeline: per model variant (namespace, as in
modeling), an Optuna study on the variant's inputs, then the best values as
parameters and the importance plot. Not part of ``__default__``.
"""

from kedro.pipeline import Node, Pipeline

from multimodal_fusion.pipelines import named_partial
from multimodal_fusion.variants import VARIANT_INPUTS, variant_output

from .nodes import importance_plot, tune_variant, tuned_parameters

OUTPUTS = ("tuning_study", "tuned_parameters", "tuning_importance")


def variant_tuning(variant: str) -> Pipeline:
    """The study of one variant and what is read from it."""
    return Pipeline(
        [
            Node(
                named_partial(tune_variant, variant=variant),
                ["model_inputs", "params:model", "params:tuning", "params:seed"],
                "tuning_study",
                name="tune_hyperparameters",
            ),
            Node(
                tuned_parameters,
                "tuning_study",
                "tuned_parameters",
                name="write_tuned_parameters",
            ),
            Node(
                importance_plot,
                "tuning_study",
                "tuning_importance",
                name="plot_importance",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    return sum(
        (
            Pipeline(
                variant_tuning(variant),
                namespace=variant,
                inputs={"model_inputs": source},
                outputs={name: variant_output(variant, name) for name in OUTPUTS},
                parameters={
                    "params:tuning": "params:tuning",
                    "params:seed": "params:seed",
                },
            )
            for variant, source in VARIANT_INPUTS.items()
        ),
        Pipeline([]),
    )
