"""Wiring of the feature_extraction pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    extract_audio_features,
    featurize_texts,
    fit_audio_scaler,
    fit_text_featurizer,
    scale_audio_features,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                fit_text_featurizer,
                ["contacts", "params:feature_extraction.text"],
                "text_featurizer",
                name="fit_text_featurizer",
            ),
            Node(
                featurize_texts,
                ["contacts", "text_featurizer"],
                "text_features",
                name="featurize_texts",
            ),
            Node(
                extract_audio_features,
                ["contacts", "clean_audio", "params:feature_extraction.audio"],
                "raw_audio_features",
                name="extract_audio_features",
            ),
            Node(
                fit_audio_scaler,
                ["contacts", "raw_audio_features"],
                "audio_scaler",
                name="fit_audio_scaler",
            ),
            Node(
                scale_audio_features,
                ["raw_audio_features", "audio_scaler"],
                "audio_features",
                name="scale_audio_features",
            ),
        ]
    )
