"""Perturbations of raw inputs, for data augmentation at training time (and for
robustness checks): :mod:`~multimodal_fusion.robustness.audio_robust` for
waveforms, :mod:`~multimodal_fusion.robustness.text_robust` for messages.

The augmentations that run inside the networks at every training step
(SpecAugment masks, modality dropout, adversarial examples) are layers and a
training step in :mod:`multimodal_fusion.fusions`.
"""
