"""Custom Kedro datasets of the project."""

from .audio_dataset import AudioClip, AudioDataset
from .audio_folder_dataset import AudioFolderDataset
from .version_history_dataset import VersionHistoryDataset

__all__ = ["AudioClip", "AudioDataset", "AudioFolderDataset", "VersionHistoryDataset"]
