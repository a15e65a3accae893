"""Wiring of the feature_extraction pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    extract_audio_features,
    featurize_texts,
    fit_audio_standardizer,
    fit_text_featurizer,
    fit_token_vocabulary,
    make_feature_path,
    standardize_audio_features,
    tokenize_texts,
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
                fit_token_vocabulary,
                ["contacts", "params:feature_extraction.tokens"],
                "token_vocabulary",
                name="fit_token_vocabulary",
            ),
            Node(
                tokenize_texts,
                ["contacts", "token_vocabulary"],
                "text_tokens",
                name="tokenize_texts",
            ),
            Node(
                extract_audio_features,
                [
                    "contacts",
                    "clean_audio",
                    "params:feature_extraction.audio",
                    "params:data_processing.audio.sample_rate",
                    "params:engine",
                ],
                "raw_audio_features",
                name="extract_audio_features",
            ),
            Node(
                fit_audio_standardizer,
                ["contacts", "raw_audio_features"],
                "audio_standardizer",
                name="fit_audio_standardizer",
            ),
            Node(
                standardize_audio_features,
                ["raw_audio_features", "audio_standardizer"],
                "audio_features",
                name="standardize_audio_features",
            ),
            Node(
                make_feature_path,
                [
                    "text_featurizer",
                    "token_vocabulary",
                    "audio_standardizer",
                    "audio_features",
                    "params:feature_extraction.audio",
                    "params:data_processing.audio.sample_rate",
                ],
                "feature_path",
                name="make_feature_path",
            ),
        ]
    )
