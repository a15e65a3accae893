"""``VersionHistoryDataset`` reads every saved version of a versioned JSON
dataset at once, so a node can compare runs (read-only)."""

from __future__ import annotations

import json
import os
from pathlib import PurePosixPath
from typing import Any

import fsspec
from kedro.io.core import AbstractDataset, DatasetError, get_protocol_and_path


class VersionHistoryDataset(AbstractDataset[None, dict[str, Any]]):
    """Loads ``{version: content}`` for all versions of a versioned JSON file,
    oldest first. Point ``filepath`` at the same path as the versioned entry.

    Example (catalog YAML):

    .. code-block:: yaml

        metrics_history:
          type: multimodal_fusion.datasets.VersionHistoryDataset
          filepath: data/08_reporting/metrics.json
    """

    def __init__(
        self, *, filepath: str | os.PathLike, metadata: dict[str, Any] | None = None
    ) -> None:
        """Creates the history reader.

        Args:
            filepath: The versioned dataset's path (``<dir>/<name>.json``); its
                versions live in ``<filepath>/<version>/<name>.json``.
            metadata: Any arbitrary metadata; ignored by Kedro.
        """
        protocol, path = get_protocol_and_path(str(filepath))
        self._protocol = protocol
        self._filepath = PurePosixPath(path)
        self._fs = fsspec.filesystem(protocol)
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        pattern = f"{self._filepath}/*/{self._filepath.name}"
        history = {}
        for path in sorted(self._fs.glob(pattern)):
            version = PurePosixPath(path).parent.name
            with self._fs.open(path, "r") as handle:
                history[version] = json.load(handle)
        return history

    def save(self, data: None) -> None:
        raise DatasetError("VersionHistoryDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol}

    def _exists(self) -> bool:
        return bool(self._fs.glob(f"{self._filepath}/*/{self._filepath.name}"))
