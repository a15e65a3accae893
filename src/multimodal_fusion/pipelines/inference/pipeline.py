"""Wiring of the inference pipeline: a batch of new contacts (``incoming_texts``,
``incoming_audio``, optional ``incoming_labels``, the formats of the raw data)
goes through the same validation, quarantine and PII masking as the training
data, with the model package's settings, then is predicted with the package's
featurizers; every incoming id ends predicted or rejected with a reason, and the
batch's drift from the training data is reported.

Not part of ``__default__``: ``kedro run --pipelines inference`` (the newest
``model_package``; ``--load-versions model_package:<version>`` for another).
"""

from kedro.pipeline import Node, Pipeline

from multimodal_fusion.intake import (
    clean_labels,
    clean_texts,
    join_contacts,
    prepare_audio,
)

from .nodes import (
    plot_drift,
    predict_batch,
    report_drift,
    score_batch,
    unpack_package,
    write_drift_summary,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                unpack_package,
                "model_package",
                ["inference_package", "incoming_text_params", "incoming_audio_params"],
                name="unpack_package",
            ),
            Node(
                clean_texts,
                ["incoming_texts", "incoming_text_params"],
                ["incoming_clean_texts", "incoming_rejected_texts"],
                name="clean_incoming_texts",
            ),
            Node(
                clean_labels,
                "incoming_labels",
                ["incoming_clean_labels", "incoming_rejected_labels"],
                name="clean_incoming_labels",
            ),
            Node(
                prepare_audio,
                ["incoming_audio", "incoming_audio_params"],
                [
                    "incoming_clean_audio",
                    "incoming_audio_index",
                    "incoming_rejected_audio",
                ],
                name="prepare_incoming_audio",
            ),
            Node(
                join_contacts,
                [
                    "incoming_clean_texts",
                    "incoming_audio_index",
                    "incoming_clean_labels",
                    "incoming_rejected_texts",
                    "incoming_rejected_labels",
                    "incoming_rejected_audio",
                    "params:inference.join",
                ],
                ["incoming_contacts", "incoming_rejected"],
                name="join_incoming_contacts",
            ),
            Node(
                predict_batch,
                [
                    "inference_package",
                    "incoming_contacts",
                    "incoming_clean_audio",
                    "params:inference",
                    "params:engine",
                ],
                "predictions",
                name="predict_batch",
            ),
            Node(
                score_batch,
                [
                    "incoming_texts",
                    "incoming_labels",
                    "incoming_audio_index",
                    "predictions",
                    "incoming_rejected",
                ],
                "batch_scores",
                name="score_batch",
            ),
            Node(
                report_drift,
                [
                    "inference_package",
                    "incoming_contacts",
                    "incoming_audio_index",
                    "predictions",
                    "params:inference.drift",
                ],
                "drift_report",
                name="report_drift",
            ),
            Node(plot_drift, "drift_report", "drift_plot", name="plot_drift"),
            Node(
                write_drift_summary,
                ["drift_report", "batch_scores"],
                "drift_summary",
                name="write_drift_summary",
            ),
        ]
    )
