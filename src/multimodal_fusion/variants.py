"""The model variants and alignments, and the names of the datasets they
publish: one table read by the modeling, evaluation and reporting pipelines and
by the model package.

Adding a variant is an entry in :data:`VARIANT_INPUTS` plus its hyperparameters
under the same key in ``parameters_modeling.yml``.
"""

from __future__ import annotations

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

# Modality → the variant trained on it alone.
UNIMODAL = {"text": "text_only", "audio": "audio_only"}

# Late-fusion variants built from trained unimodal variants (modality → the
# variant trained on it alone): modeling combines those models, with weights fit
# on validation, instead of training the same networks again.
LATE_MEMBERS = {"late_fusion": UNIMODAL}

# The variants of several modalities: their trained network is wrapped with the
# unimodal models as a floor (multimodal_fusion.routing), so the variant's
# model reads the model inputs, whatever space its network was trained in.
ROUTED = tuple(v for v in VARIANT_INPUTS if v not in UNIMODAL.values())


def variant_alignment(variant: str) -> str | None:
    """The alignment whose common space a variant's network reads, or None."""
    source = VARIANT_INPUTS[variant]
    return next((a for a, out in ALIGNMENTS.items() if out == source), None)


def variant_output(variant: str, name: str) -> str:
    """The dataset a variant (or alignment) publishes its output ``name`` to,
    outside its namespace (``metrics``, ``test_predictions``)."""
    return f"{variant}_{name}"


def sweep_inputs(model_inputs: str) -> str:
    """The dataset holding the robustness sweep's perturbed test splits in the
    space of ``model_inputs`` (the features, or an alignment's common space)."""
    return f"{model_inputs}_sweep"
