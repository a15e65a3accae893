"""The fsspec plumbing shared by the project's single-file datasets: the
kedro-datasets constructor template (protocol, filesystem, credentials,
versioning, load/save/open arguments) and existence and cache handling."""

from __future__ import annotations

import os
from copy import deepcopy
from pathlib import PurePosixPath
from typing import Any, TypeVar

import fsspec
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

_L = TypeVar("_L")
_S = TypeVar("_S")


class FileDataset(AbstractVersionedDataset[_L, _S]):
    """One file on any filesystem fsspec reaches, optionally versioned.

    Subclasses set ``DEFAULT_LOAD_ARGS``, ``DEFAULT_SAVE_ARGS`` and
    ``DEFAULT_FS_ARGS`` (``open_args_load`` / ``open_args_save``) and implement
    ``load`` and ``save``.
    """

    DEFAULT_LOAD_ARGS: dict[str, Any] = {}
    DEFAULT_SAVE_ARGS: dict[str, Any] = {}
    DEFAULT_FS_ARGS: dict[str, Any] = {}

    def __init__(  # noqa: PLR0913
        self,
        *,
        filepath: str | os.PathLike,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Creates the dataset.

        Args:
            filepath: Path to the file, optionally prefixed with an fsspec
                protocol such as ``s3://``.
            load_args: Options for loading (see the subclass), over
                ``DEFAULT_LOAD_ARGS``.
            save_args: Options for saving (see the subclass), over
                ``DEFAULT_SAVE_ARGS``.
            version: If given, a ``kedro.io.core.Version``. ``load=None`` loads the
                latest version; ``save=None`` generates a timestamp.
            credentials: Credentials for the filesystem, passed to fsspec.
            fs_args: Extra arguments for the fsspec filesystem, plus
                ``open_args_load`` / ``open_args_save`` for its ``open``.
            metadata: Any arbitrary metadata; ignored by Kedro.
        """
        _fs_args = deepcopy(fs_args) or {}
        open_args_load = _fs_args.pop("open_args_load", {})
        open_args_save = _fs_args.pop("open_args_save", {})
        protocol, path = get_protocol_and_path(filepath, version)
        if protocol == "file":
            _fs_args.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._fs = fsspec.filesystem(
            protocol, **(deepcopy(credentials) or {}), **_fs_args
        )
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )
        self._load_args = {**self.DEFAULT_LOAD_ARGS, **(load_args or {})}
        self._save_args = {**self.DEFAULT_SAVE_ARGS, **(save_args or {})}
        self._fs_open_args_load = {
            **self.DEFAULT_FS_ARGS.get("open_args_load", {}),
            **open_args_load,
        }
        self._fs_open_args_save = {
            **self.DEFAULT_FS_ARGS.get("open_args_save", {}),
            **open_args_save,
        }

    def _load_path(self) -> str:
        """The path to read (the version's, when versioned)."""
        return get_filepath_str(self._get_load_path(), self._protocol)

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": self._filepath,
            "protocol": self._protocol,
            "load_args": self._load_args,
            "save_args": self._save_args,
            "version": self._version,
        }

    def _exists(self) -> bool:
        try:
            load_path = self._load_path()
        except DatasetError:
            return False
        return self._fs.exists(load_path)

    def _release(self) -> None:
        super()._release()
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        """Invalidates the filesystem's caches of this file."""
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))
