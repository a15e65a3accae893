"""Wiring of the ``demo_data`` pipeline: plan every contact once, then render the
plan into the raw-data contract (``raw_texts``, ``raw_audio``, ``raw_labels``) and
the ``demo_manifest``; the same generator, under the ``demo_incoming`` namespace
with another seed, writes a batch of new contacts for the inference pipeline
(``incoming_texts``, ``incoming_audio``, ``incoming_labels``)."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    make_demo_manifest,
    make_raw_labels,
    make_raw_texts,
    plan_contacts,
    synthesize_audio,
)


def generator() -> Pipeline:
    """Plan the contacts, then write their texts, labels, clips and manifest."""
    return Pipeline(
        [
            Node(
                func=plan_contacts,
                inputs=["params:seed", "params:demo_data"],
                outputs="demo_contacts",
                name="plan_contacts_node",
            ),
            Node(
                func=make_raw_texts,
                inputs="demo_contacts",
                outputs="raw_texts",
                name="make_raw_texts_node",
            ),
            Node(
                func=make_raw_labels,
                inputs="demo_contacts",
                outputs="raw_labels",
                name="make_raw_labels_node",
            ),
            Node(
                func=synthesize_audio,
                inputs=["demo_contacts", "params:demo_data"],
                outputs="raw_audio",
                name="synthesize_audio_node",
            ),
            Node(
                func=make_demo_manifest,
                inputs="demo_contacts",
                outputs="demo_manifest",
                name="make_demo_manifest_node",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    incoming = Pipeline(
        generator(),
        namespace="demo_incoming",
        outputs={
            "raw_texts": "incoming_texts",
            "raw_audio": "incoming_audio",
            "raw_labels": "incoming_labels",
            "demo_manifest": "incoming_manifest",
        },
        parameters={
            "params:seed": "params:demo_incoming.seed",
            "params:demo_data": "params:demo_incoming.demo_data",
        },
    )
    return generator() + incoming
