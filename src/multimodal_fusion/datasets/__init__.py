"""Custom Kedro datasets of the project."""

from .array_folder_dataset import ArrayChunk, ArrayFolderDataset
from .audio_dataset import AudioClip, AudioDataset, AudioInfo
from .audio_folder_dataset import AudioFolderDataset, AudioSource
from .file_folder_dataset import FileFolderDataset
from .model_package_dataset import ModelPackageDataset
from .tolerant_csv_dataset import TolerantCSVDataset
from .version_history_dataset import VersionHistoryDataset

__all__ = [
    "ArrayChunk",
    "ArrayFolderDataset",
    "AudioClip",
    "AudioDataset",
    "AudioFolderDataset",
    "AudioInfo",
    "AudioSource",
    "FileFolderDataset",
    "ModelPackageDataset",
    "TolerantCSVDataset",
    "VersionHistoryDataset",
]
