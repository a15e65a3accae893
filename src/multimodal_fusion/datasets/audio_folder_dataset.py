"""``AudioFolderDataset``: a folder of clips as one catalog entry, each clip an
``AudioDataset`` loaded lazily. It is a ``PartitionedDataset`` with the audio
dataset preset, that may be declared to accept an empty folder (a run on a
dataset without audio writes no clips).

Loading gives an :class:`AudioSource` per file: call it to decode the clip, or ask
its header (:meth:`AudioSource.info`) or its samples block by block
(:meth:`AudioSource.blocks`) without holding the whole clip in memory.

Hidden files (``.DS_Store``, editors' swap files) are not listed. On a local
folder, a file that is a symbolic link leading outside the folder, or
that is not a regular file (a linked folder, a dangling link, a pipe), is listed
but never read: its source refuses to open it and says why, so that a pipeline
can quarantine it with that reason.

Saving writes a marker file while the partitions are written and removes it when
all are: an interrupted save is not taken for a finished one (``exists()`` is
False), so ``kedro run --only-missing-outputs`` redoes it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from copy import deepcopy
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from kedro.io.core import DatasetError
from kedro_datasets.partitions import PartitionedDataset

from .audio_dataset import AudioClip, AudioDataset, AudioInfo

logger = logging.getLogger(__name__)

SAVING_MARKER = ".saving-in-progress"


class AudioSource:
    """One clip of a folder, not decoded yet.

    Calling it decodes the whole clip (the ``PartitionedDataset`` loader
    contract). ``info()`` reads the header only and ``blocks()`` decodes block by
    block. When ``refusal`` is set, the file must not be read (for example a
    symbolic link out of the folder) and every read raises ``DatasetError``.

    Attributes:
        key: The partition id: the file path relative to the folder.
        refusal: ``(reason, detail)`` when the file is never read, else None;
            reason is ``"outside_root"`` or ``"not_a_file"``.
    """

    def __init__(
        self,
        key: str,
        dataset: AudioDataset,
        refusal: tuple[str, str] | None = None,
    ) -> None:
        self.key = key
        self.refusal = refusal
        self._dataset = dataset

    @property
    def id(self) -> str:
        """The contact id: the file name without its suffix."""
        return PurePosixPath(self.key).stem

    def __call__(self) -> AudioClip:
        self._check()
        return self._dataset.load()

    def info(self) -> AudioInfo:
        """The header: rate, channels, frames, format, missing bytes."""
        self._check()
        return self._dataset.info()

    def blocks(self, blocksize: int = 65536) -> Iterator[np.ndarray]:
        """float32 blocks ``(<= blocksize, channels)`` until the end of the clip."""
        self._check()
        return self._dataset.blocks(blocksize)

    def _check(self) -> None:
        if self.refusal:
            raise DatasetError(f"Refusing to read '{self.key}': {self.refusal[1]}")

    def __repr__(self) -> str:
        return f"AudioSource({self.key!r})"


class AudioFolderDataset(PartitionedDataset):
    """Loads ``{partition id: AudioSource}``; a partition id is the file path
    relative to ``path`` (without ``filename_suffix``), and its stem is the
    contact id.

    Example (catalog YAML):

    .. code-block:: yaml

        clean_audio:
          type: multimodal_fusion.datasets.AudioFolderDataset
          path: data/02_intermediate/audio
          filename_suffix: .flac
          allow_empty: true

    Saving accepts clips or callables returning clips; callables are called one
    at a time while saving, so a whole folder never sits in memory.
    """

    def __init__(
        self,
        *,
        path: str,
        dataset: str | dict[str, Any] = "multimodal_fusion.datasets.AudioDataset",
        allow_empty: bool = False,
        **kwargs: Any,
    ) -> None:
        """Creates the folder dataset.

        Args:
            path: Folder of clips, optionally with an fsspec protocol.
            dataset: The per-clip dataset; ``AudioDataset`` by default (give a dict
                to pass it ``load_args`` or ``save_args``).
            allow_empty: Load an empty or missing folder as ``{}`` instead of
                failing. Leave False for raw data, where an empty folder is
                almost always a wrong path.
            **kwargs: Any other ``PartitionedDataset`` argument
                (``filename_suffix``, ``overwrite``, ``credentials``, ...).
        """
        super().__init__(path=path, dataset=dataset, **kwargs)
        self._allow_empty = allow_empty

    def load(self) -> dict[str, AudioSource]:
        self._invalidate_caches()
        sources = {}
        for path in self._list_partitions():
            kwargs = deepcopy(self._dataset_config)
            kwargs[self._filepath_arg] = self._join_protocol(path)
            key = self._path_to_partition(path)
            sources[key] = AudioSource(
                key, self._dataset_type(**kwargs), self._refusal(path)
            )
        if not sources:
            if self._allow_empty:
                logger.info("No clips in '%s': continuing without audio", self._path)
                return {}
            raise DatasetError(f"No partitions found in '{self._path}'")
        return sources

    def save(self, data: dict[str, AudioClip | Callable[[], AudioClip]]) -> None:
        fs, marker = self._filesystem, self._marker_path()
        if self._overwrite and fs.exists(self._normalized_path):
            fs.rm(self._normalized_path, recursive=True)
        fs.makedirs(self._path_on_fs(), exist_ok=True)
        fs.touch(marker)
        for key, clip in sorted(data.items()):
            kwargs = deepcopy(self._dataset_config)
            kwargs[self._filepath_arg] = self._join_protocol(
                self._partition_to_path(key)
            )
            if callable(clip) and self._save_lazily:
                clip = clip()  # noqa: PLW2901 - one clip in memory at a time
            self._dataset_type(**kwargs).save(clip)
        fs.rm(marker)
        self._invalidate_caches()

    def _list_partitions(self) -> list[str]:
        """Files under the folder, without hidden files (``.DS_Store``, the
        saving marker, editors' swap files)."""
        return [
            p
            for p in super()._list_partitions()
            if not PurePosixPath(p).name.startswith(".")
        ]

    def _exists(self) -> bool:
        return super()._exists() and not self._filesystem.exists(self._marker_path())

    def _path_on_fs(self) -> str:
        return self._filesystem._strip_protocol(self._normalized_path).rstrip(self._sep)

    def _marker_path(self) -> str:
        return self._sep.join([self._path_on_fs(), SAVING_MARKER])

    def _refusal(self, path: str) -> tuple[str, str] | None:
        """Why a listed file must not be read (local folders only)."""
        if self._protocol not in (None, "file"):
            return None
        root = os.path.realpath(self._path_on_fs())
        target = os.path.realpath(path)
        if os.path.commonpath([root, target]) != root:
            return (
                "outside_root",
                "it is a symbolic link that leads outside the audio folder; copy "
                "the file into the folder instead of linking to it",
            )
        if not os.path.isfile(target):
            return (
                "not_a_file",
                "it is not a regular file (a linked folder, a dangling link or a "
                "device); keep only audio files in the audio folder",
            )
        return None

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "allow_empty": self._allow_empty}
