"""``AudioFolderDataset``: a folder of clips as one catalog entry, each clip an
``AudioDataset`` loaded lazily. It is a ``PartitionedDataset`` with the audio
dataset preset, that may be declared to accept an empty folder (a run on a
dataset without audio writes no clips).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kedro_datasets.partitions import PartitionedDataset

from .audio_dataset import AudioClip

logger = logging.getLogger(__name__)


class AudioFolderDataset(PartitionedDataset):
    """Loads ``{partition id: loader}``; a partition id is the file path relative
    to ``path`` (without ``filename_suffix``), and its stem is the contact id.

    Example (catalog YAML):

    .. code-block:: yaml

        clean_audio:
          type: multimodal_fusion.datasets.AudioFolderDataset
          path: data/02_intermediate/audio
          filename_suffix: .flac
          allow_empty: true
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

    def load(self) -> dict[str, Callable[[], AudioClip]]:
        if self._allow_empty and not self._list_partitions():
            logger.info("No clips in '%s': continuing without audio", self._path)
            return {}
        return super().load()

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "allow_empty": self._allow_empty}
