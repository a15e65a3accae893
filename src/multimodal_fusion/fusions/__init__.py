"""Keras building blocks of the fusion models: custom layers
(:mod:`~multimodal_fusion.fusions.layers`) and the network builder with its
adversarial training step (:mod:`~multimodal_fusion.fusions.networks`).

Importing :mod:`multimodal_fusion.fusions.networks` registers every custom layer,
which unpickling a model needs. The estimators live in
:mod:`multimodal_fusion.fusion`.
"""
