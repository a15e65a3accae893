"""Validation, cleaning and joining of raw records (shared by data_processing,
inference and the model package). Interim: re-exports the data_processing
functions until they move here."""

from multimodal_fusion.pipelines.data_processing.nodes import (
    REJECTED_COLUMNS,
    clean_id,
    clean_labels,
    clean_texts,
    join_contacts,
    prepare_audio,
)

__all__ = [
    "REJECTED_COLUMNS",
    "clean_id",
    "clean_labels",
    "clean_texts",
    "join_contacts",
    "prepare_audio",
]
