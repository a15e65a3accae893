"""``AudioFolderDataset``: a folder of clips as one catalog entry, each clip an
``AudioDataset`` loaded lazily. It is a ``PartitionedDataset`` with the audio
dataset preset, that may be declared to accept an empty folder (a run on a
dataset without audio writes no clips).

Loading gives an :class:`AudioSource` per file: call it to decode the clip, or ask
its header (:meth:`AudioSource.info`) or its samples block by block
(:meth:`AudioSource.blocks`) without holding the whole clip in memory. A source
holds only the file's path (a local path, or a URL such as
``s3://bucket/audio/a.flac`` with the folder's fsspec storage options) and reads
it as ``AudioDataset`` would, through the same functions, so that listing
thousands of clips and shipping them to worker processes or Dask workers stays
cheap, and every worker opens the clip itself: local files with libsndfile's
own I/O, remote ones through fsspec. Only a folder with another per-clip
dataset (or versioned clips, or its own open arguments) builds each clip's
dataset on first use.

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
import stat
from collections.abc import Callable, Iterator
from copy import deepcopy
from functools import partial
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from kedro.io.core import VERSION_KEY, AbstractDataset, DatasetError
from kedro_datasets.partitions import PartitionedDataset

from .audio_dataset import (
    AudioClip,
    AudioDataset,
    AudioInfo,
    open_clip,
    open_path,
    read_blocks,
    read_clip_at,
    read_info,
)

logger = logging.getLogger(__name__)

SAVING_MARKER = ".saving-in-progress"


class AudioSource:
    """One clip of a folder, not decoded yet.

    Calling it decodes the whole clip (the ``PartitionedDataset`` loader
    contract). ``info()`` reads the header only and ``blocks()`` decodes block by
    block. When ``refusal`` is set, the file must not be read (for example a
    symbolic link out of the folder) and every read raises ``DatasetError``.

    A clip holds only its path (local, or an fsspec URL with the
    ``storage_options`` to open it) and ``load_args``: cheap to list, to pickle
    to a worker process and to call. A clip of a folder with another per-clip
    dataset builds that dataset on first use, from ``dataset`` (a callable
    returning it).

    Attributes:
        key: The partition id: the file path relative to the folder.
        refusal: ``(reason, detail)`` when the file is never read, else None;
            reason is ``"outside_root"`` or ``"not_a_file"``.
    """

    def __init__(
        self,
        key: str,
        dataset: AudioDataset | Callable[[], AudioDataset] | None = None,
        refusal: tuple[str, str] | None = None,
        *,
        path: str | None = None,
        load_args: dict[str, Any] | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        """Creates the source.

        Args:
            key: The partition id.
            dataset: The clip's dataset, or a callable building it on first
                use; used when ``path`` is None.
            refusal: Why the file must not be read, or None.
            path: Local path or fsspec URL of the file, read directly (with
                ``load_args``, as ``AudioDataset`` reads it) instead of through
                a dataset.
            load_args: ``soundfile.read`` options when ``path`` is given.
            storage_options: fsspec filesystem arguments (credentials
                included) for a URL ``path``; unused for a local one.
        """
        if path is None and dataset is None:
            raise ValueError("AudioSource needs a path or a dataset factory")
        self.key = key
        self.refusal = refusal
        self._path = path
        self._load_args = load_args
        self._storage_options = storage_options
        if isinstance(dataset, AbstractDataset):
            self._make_dataset, self._dataset = None, dataset
        else:
            self._make_dataset, self._dataset = dataset, None

    @property
    def id(self) -> str:
        """The contact id: the file name without its suffix."""
        return PurePosixPath(self.key).stem

    def __call__(self) -> AudioClip:
        self._check()
        if self._path is None:
            return self._get_dataset().load()
        try:
            return read_clip_at(
                self._path,
                load_args=self._load_args,
                storage_options=self._storage_options,
            )
        except DatasetError:
            raise
        except Exception as err:  # as AbstractDataset.load wraps what it raises
            raise DatasetError(
                f"Failed while loading clip '{self.key}'.\n{err!s}"
            ) from err

    def info(self) -> AudioInfo:
        """The header: rate, channels, frames, format, missing bytes."""
        self._check()
        if self._path is None:
            return self._get_dataset().info()
        with self._open() as fs_file:
            return read_info(fs_file, name=self._path)

    def blocks(self, blocksize: int = 65536) -> Iterator[np.ndarray]:
        """float32 blocks ``(<= blocksize, channels)`` until the end of the clip."""
        self._check()
        if self._path is None:
            return self._get_dataset().blocks(blocksize)
        return self._path_blocks(blocksize)

    def _path_blocks(self, blocksize: int) -> Iterator[np.ndarray]:
        with self._open() as fs_file:
            yield from read_blocks(fs_file, name=self._path, blocksize=blocksize)

    def _open(self) -> Any:
        return open_clip(
            partial(open_path, self._path, self._storage_options), self._path
        )

    def _get_dataset(self) -> AudioDataset:
        if self._dataset is None:
            self._dataset = self._make_dataset()
        return self._dataset

    def _check(self) -> None:
        if self.refusal:
            raise DatasetError(f"Refusing to read '{self.key}': {self.refusal[1]}")

    def __getstate__(self) -> dict[str, Any]:
        # a dataset built here from the factory is rebuilt where it is unpickled
        if self._make_dataset is None:
            return self.__dict__
        return {**self.__dict__, "_dataset": None}

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
        direct = self._direct_read()
        refusal_of = self._refusals()
        local = self._protocol in (None, "file")
        sources = {}
        for path in self._list_partitions():
            key = self._path_to_partition(path)
            refusal = refusal_of(path)
            if direct is not None:
                load_args, storage_options = direct  # shared: pickled once
                sources[key] = AudioSource(
                    key,
                    None,
                    refusal,
                    path=path if local else self._join_protocol(path),
                    load_args=load_args,
                    storage_options=storage_options,
                )
            else:
                sources[key] = AudioSource(key, self._dataset_factory(path), refusal)
        if not sources:
            if self._allow_empty:
                logger.info("No clips in '%s': continuing without audio", self._path)
                return {}
            raise DatasetError(f"No partitions found in '{self._path}'")
        return sources

    def _direct_read(
        self,
    ) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """The ``load_args`` and fsspec storage options (None for a local
        folder) with which a clip is read straight from its path or URL, as
        ``AudioDataset`` reads it (the same credentials and filesystem
        arguments); None when clips need their own dataset: another per-clip
        dataset type (even a subclass, which may read differently), versioned
        clips, or open arguments that ``AudioDataset.info``/``blocks`` would
        honour."""
        config = self._dataset_config
        if self._dataset_type is not AudioDataset or VERSION_KEY in config:
            return None
        fs_args = deepcopy(config.get("fs_args") or {})
        fs_args.pop("open_args_save", None)
        open_args = fs_args.pop("open_args_load", None)
        if open_args and open_args != AudioDataset.DEFAULT_FS_ARGS["open_args_load"]:
            return None
        load_args = {
            **AudioDataset.DEFAULT_LOAD_ARGS,
            **(config.get("load_args") or {}),
        }
        if self._protocol in (None, "file"):
            return load_args, None
        return load_args, {**deepcopy(config.get("credentials") or {}), **fs_args}

    def _dataset_factory(self, path: str) -> Callable[[], AudioDataset]:
        """Builds the dataset of the clip at ``path`` when called (when first
        used, not while listing)."""
        kwargs = deepcopy(self._dataset_config)
        kwargs[self._filepath_arg] = self._join_protocol(path)
        return partial(self._dataset_type, **kwargs)

    def save(
        self, data: dict[str, AudioClip | Callable[[], AudioClip] | bytes]
    ) -> None:
        """Writes every clip (a clip, a loader of one, or the bytes of an
        encoded file, written as they are) under its key."""
        fs, marker = self._filesystem, self._marker_path()
        if self._overwrite and fs.exists(self._normalized_path):
            fs.rm(self._normalized_path, recursive=True)
        fs.makedirs(self._path_on_fs(), exist_ok=True)
        fs.touch(marker)
        for key, clip in sorted(data.items()):
            if isinstance(clip, bytes):  # an encoded file: written as it is
                fs.pipe_file(self._join_protocol(self._partition_to_path(key)), clip)
                continue
            if callable(clip) and self._save_lazily:
                clip = clip()  # noqa: PLW2901 - one clip in memory at a time
            self._dataset_factory(self._partition_to_path(key))().save(clip)
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

    def _refusals(self) -> Callable[[str], tuple[str, str] | None]:
        """Why a listed file must not be read (local folders only): a function
        of the file's path, with the folder resolved once for the listing."""
        if self._protocol not in (None, "file"):
            return lambda path: None
        folder = self._path_on_fs()
        root = os.path.realpath(folder)

        def refusal(path: str) -> tuple[str, str] | None:
            if os.path.dirname(path) == folder and _is_regular_file(path):
                return None  # right in the folder and no link: one lstat suffices
            target = os.path.realpath(path)
            if os.path.commonpath([root, target]) != root:
                return (
                    "outside_root",
                    "it is a symbolic link that leads outside the audio folder; "
                    "copy the file into the folder instead of linking to it",
                )
            if not os.path.isfile(target):
                return (
                    "not_a_file",
                    "it is not a regular file (a linked folder, a dangling link "
                    "or a device); keep only audio files in the audio folder",
                )
            return None

        return refusal

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "allow_empty": self._allow_empty}


def _is_regular_file(path: str) -> bool:
    """Whether ``path`` itself (not what a link leads to) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
