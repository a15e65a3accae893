"""Custom Kedro datasets of the project."""

from .audio_dataset import AudioClip, AudioDataset

__all__ = ["AudioClip", "AudioDataset"]
