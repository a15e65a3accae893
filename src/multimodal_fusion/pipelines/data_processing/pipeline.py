"""Wiring of the data_processing pipeline."""

from kedro.pipeline import Node, Pipeline

from multimodal_fusion.intake import (
    clean_labels,
    clean_texts,
    join_contacts,
    prepare_audio,
)

from .nodes import split_contacts, summarise_data


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                clean_texts,
                ["raw_texts", "params:data_processing.text"],
                ["texts", "rejected_texts"],
                name="clean_texts",
            ),
            Node(
                clean_labels,
                ["raw_labels", "params:data_processing.labels"],
                ["labels", "rejected_labels"],
                name="clean_labels",
            ),
            Node(
                prepare_audio,
                ["raw_audio", "params:data_processing.audio"],
                ["clean_audio", "audio_index", "rejected_audio"],
                name="prepare_audio",
            ),
            Node(
                join_contacts,
                [
                    "texts",
                    "audio_index",
                    "labels",
                    "rejected_texts",
                    "rejected_labels",
                    "rejected_audio",
                    "params:data_processing.labels",
                ],
                ["joined_contacts", "rejected"],
                name="join_contacts",
            ),
            Node(
                split_contacts,
                ["joined_contacts", "params:data_processing.split", "params:seed"],
                "contacts",
                name="split_contacts",
            ),
            Node(
                summarise_data,
                [
                    "raw_texts",
                    "raw_audio",
                    "raw_labels",
                    "texts",
                    "audio_index",
                    "labels",
                    "contacts",
                    "rejected",
                ],
                "data_summary",
                name="summarise_data",
            ),
        ]
    )
