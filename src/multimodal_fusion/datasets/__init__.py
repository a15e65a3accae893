"""Custom Kedro datasets of the project."""

from .array_folder_dataset import ArrayChunk, ArrayFolderDataset
from .audio_dataset import AudioClip, AudioDataset
from .audio_folder_dataset import AudioFolderDataset

__all__ = [
    "ArrayChunk",
    "ArrayFolderDataset",
    "AudioClip",
    "AudioDataset",
    "AudioFolderDataset",
]
