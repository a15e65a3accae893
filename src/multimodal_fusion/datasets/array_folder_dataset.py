"""``ArrayFolderDataset`` saves a dict of NumPy arrays as a folder of ``.npy``
files, one per key, and loads them memory-mapped: a consumer reads only the rows
it touches, from the page cache.

It also takes the rows in chunks, from a Kedro generator node (a node function
that ``yield`` s): each :class:`ArrayChunk` is appended to the files, and the
folder appears, complete, when the last chunk is written. Features of any number
of clips thus stream to disk with memory bounded by one chunk, and a run that
fails halfway leaves the previous folder intact.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import struct
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from kedro.io.core import AbstractDataset, DatasetError, get_protocol_and_path
from kedro_datasets._typing import JSONPreview

# Fixed-size .npy header, rewritten in place with the final shape once every
# chunk is written (format 1.0: magic, version, 2-byte length, padded dict).
_HEADER_BYTES = 256
_MAGIC = b"\x93NUMPY\x01\x00"


class ArrayChunk(NamedTuple):
    """Consecutive rows of every array of an :class:`ArrayFolderDataset`.

    Attributes:
        arrays: The same keys in every chunk; each array's rows follow the rows
            of the previous chunk. Arrays may have different row counts (say,
            per-clip statistics and the frames of those clips).
        first: This chunk starts a new folder (earlier partial writes are
            discarded).
        last: The folder is complete after this chunk.
    """

    arrays: dict[str, np.ndarray]
    first: bool
    last: bool


class ArrayFolderDataset(AbstractDataset[dict[str, np.ndarray] | ArrayChunk, dict]):
    """A dict of arrays as a folder of ``.npy`` files, on the local filesystem.

    Examples:
        Using the catalog (YAML):

        .. code-block:: yaml

            audio_features:
              type: multimodal_fusion.datasets.ArrayFolderDataset
              path: data/04_feature/audio_features

        Using the Python API:

        >>> import numpy as np
        >>> from multimodal_fusion.datasets import ArrayChunk, ArrayFolderDataset
        >>> dataset = ArrayFolderDataset(path=tmp_path / "features")  # doctest: +SKIP
        >>> dataset.save(ArrayChunk({"x": np.zeros((2, 3))}, first=True, last=False))
        >>> dataset.save(ArrayChunk({"x": np.ones((1, 3))}, first=False, last=True))
        >>> dataset.load()["x"].shape  # doctest: +SKIP
        (3, 3)
    """

    DEFAULT_LOAD_ARGS: dict[str, Any] = {"mmap_mode": "r"}

    def __init__(
        self,
        *,
        path: str | os.PathLike,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Creates a new ``ArrayFolderDataset``.

        Args:
            path: Folder of the ``.npy`` files, on the local filesystem (memory
                mapping needs local files).
            load_args: ``mmap_mode`` for ``numpy.load``: ``"r"`` (default) maps
                the files read-only; ``None`` reads them into memory.
            metadata: Any arbitrary metadata; ignored by Kedro.

        Raises:
            DatasetError: for a path on a remote filesystem.
        """
        protocol, _ = get_protocol_and_path(str(path))
        if protocol != "file":
            raise DatasetError(
                f"ArrayFolderDataset stores memory-mapped files on the local "
                f"filesystem; '{path}' is on '{protocol}'. Use a local path."
            )
        self._path = Path(path)
        self._load_args = {**self.DEFAULT_LOAD_ARGS, **(load_args or {})}
        self.metadata = metadata
        self._rows: dict[str, tuple[np.dtype, tuple[int, ...], int]] | None = None

    @property
    def _partial(self) -> Path:
        return self._path.with_name(self._path.name + ".partial")

    def load(self) -> dict[str, np.ndarray]:
        if not self._path.is_dir():
            raise DatasetError(
                f"No arrays at '{self._path}': run the node that writes this "
                "dataset first."
            )
        return {
            file.stem: np.load(file, mmap_mode=self._load_args["mmap_mode"])
            for file in sorted(self._path.glob("*.npy"))
        }

    def save(self, data: dict[str, np.ndarray] | ArrayChunk) -> None:
        chunk = data if isinstance(data, ArrayChunk) else ArrayChunk(data, True, True)
        if chunk.first:
            shutil.rmtree(self._partial, ignore_errors=True)
            self._partial.mkdir(parents=True)
            self._rows = {}
        elif self._rows is None:
            raise DatasetError(
                f"A chunk for '{self._path}' arrived before its first chunk."
            )
        elif set(chunk.arrays) != set(self._rows):
            raise DatasetError(
                f"Chunk for '{self._path}' has the arrays {sorted(chunk.arrays)}; "
                f"the first chunk had {sorted(self._rows)}."
            )
        for key, array in chunk.arrays.items():
            self._append(key, np.ascontiguousarray(array), new=chunk.first)
        if chunk.last:
            self._publish()

    def _append(self, key: str, array: np.ndarray, *, new: bool) -> None:
        if array.dtype.hasobject or array.ndim == 0:
            raise DatasetError(
                f"Array '{key}' for '{self._path}' must have rows and a fixed-size "
                f"dtype (got {array.dtype}, {array.ndim} dimensions); store strings "
                "as fixed-width unicode (astype(str))."
            )
        file = self._partial / f"{key}.npy"
        if new:
            self._rows[key] = (array.dtype, array.shape[1:], 0)
            with file.open("wb") as stream:
                stream.write(_npy_header(array.dtype, (0, *array.shape[1:])))
        dtype, tail, rows = self._rows[key]
        if (array.dtype, array.shape[1:]) != (dtype, tail):
            raise DatasetError(
                f"Array '{key}' for '{self._path}' changed from {dtype} rows of "
                f"shape {tail} to {array.dtype} rows of shape {array.shape[1:]}."
            )
        with file.open("ab") as stream:
            stream.write(array.data)
        self._rows[key] = (dtype, tail, rows + len(array))

    def _publish(self) -> None:
        """Writes the final shapes, then swaps the complete folder in."""
        for key, (dtype, tail, rows) in self._rows.items():
            with (self._partial / f"{key}.npy").open("r+b") as stream:
                stream.write(_npy_header(dtype, (rows, *tail)))
        old = self._path.with_name(self._path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if self._path.exists():
            self._path.rename(old)
        self._partial.rename(self._path)
        shutil.rmtree(old, ignore_errors=True)
        self._rows = None

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "load_args": self._load_args}

    def preview(self) -> JSONPreview:
        """Shape and dtype of every array, shown by kedro-viz."""
        arrays = self.load() if self._exists() else {}
        return JSONPreview(
            json.dumps(
                {
                    k: {"shape": list(a.shape), "dtype": str(a.dtype)}
                    for k, a in arrays.items()
                }
            )
        )


def read_rows(array: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``array`` as an in-memory copy.

    For an array memory-mapped by :meth:`ArrayFolderDataset.load`, only those rows
    are mapped, and only while they are copied: reading a large file block by
    block keeps the process's resident memory at one block (pages touched through
    one long-lived map would count as resident until it is closed).
    """
    if not (isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap)):
        return np.array(array[start:stop])
    start, stop = min(start, len(array)), min(max(stop, start), len(array))
    if start == stop:
        return np.empty((0, *array.shape[1:]), array.dtype)
    block = np.memmap(
        array.filename,
        dtype=array.dtype,
        mode="r",
        offset=array.offset + start * array.strides[0],
        shape=(stop - start, *array.shape[1:]),
    )
    return np.array(block)


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A ``.npy`` format 1.0 header of exactly ``_HEADER_BYTES`` bytes."""
    fields = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": tuple(int(n) for n in shape),
    }
    size = _HEADER_BYTES - len(_MAGIC) - 2
    text = repr(fields).ljust(size - 1) + "\n"
    if len(text) != size:
        raise DatasetError(f"Array header too long for shape {shape}")
    return _MAGIC + struct.pack("<H", size) + text.encode("latin1")
