"""``ArrayFolderDataset`` saves a dict of NumPy arrays as a folder of ``.npy``
files, one per key, on any filesystem fsspec reaches (a local folder, ``s3://``,
``gs://``, ``abfs://``, ...). A local folder loads memory-mapped: a consumer
reads only the rows it touches, from the page cache. A remote folder loads into
memory (memory mapping needs local files).

It also takes the rows in chunks, from a Kedro generator node (a node function
that ``yield`` s): each :class:`ArrayChunk` is appended to the files, and the
folder appears, complete, when the last chunk is written. Features of any number
of clips thus stream to disk with memory bounded by one chunk, and a run that
fails halfway leaves the previous folder intact. On a remote filesystem the
chunks are appended to a local temporary folder (object stores cannot append to
or rewrite part of an object), which is uploaded, then swapped in, after the
last chunk: local disk, not memory, holds the features until then.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import struct
import tempfile
from copy import deepcopy
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import fsspec
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
    """A dict of arrays as a folder of ``.npy`` files, on any fsspec filesystem.

    Examples:
        Using the catalog (YAML):

        .. code-block:: yaml

            audio_features:
              type: multimodal_fusion.datasets.ArrayFolderDataset
              path: data/04_feature/audio_features

            # on object storage, credentials from conf/local/credentials.yml
            audio_features:
              type: multimodal_fusion.datasets.ArrayFolderDataset
              path: s3://my-bucket/04_feature/audio_features
              credentials: features_s3

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

    def __init__(  # noqa: PLR0913
        self,
        *,
        path: str | os.PathLike,
        load_args: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Creates a new ``ArrayFolderDataset``.

        Args:
            path: Folder of the ``.npy`` files: a local path, or a URL with an
                fsspec protocol (``s3://bucket/features``).
            load_args: ``mmap_mode`` for ``numpy.load`` on a local folder:
                ``"r"`` (default) maps the files read-only; ``None`` reads them
                into memory. A remote folder is always read into memory.
            credentials: Credentials for the filesystem, passed to fsspec
                (for ``s3://``: ``key``, ``secret``, ``client_kwargs``, ...).
            fs_args: Extra arguments for the fsspec filesystem.
            metadata: Any arbitrary metadata; ignored by Kedro.

        Raises:
            DatasetError: naming the path, for an unknown protocol or one whose
                fsspec driver (``s3fs``, ``gcsfs``, ``adlfs``) is not installed.
        """
        protocol, stripped = get_protocol_and_path(str(path))
        self._protocol = protocol
        self._url = str(path)
        try:
            self._fs = fsspec.filesystem(
                protocol, **deepcopy(credentials or {}), **deepcopy(fs_args or {})
            )
        except (ImportError, ValueError) as err:  # no such protocol, no driver
            raise DatasetError(f"Cannot reach '{path}': {err}") from err
        self._path: Any = Path(stripped) if self._is_local else PurePosixPath(stripped)
        self._load_args = {**self.DEFAULT_LOAD_ARGS, **(load_args or {})}
        self.metadata = metadata
        self._rows: dict[str, tuple[np.dtype, tuple[int, ...], int]] | None = None
        self._spool: Path | None = None  # a remote folder's chunks, written locally

    @property
    def _is_local(self) -> bool:
        return self._protocol == "file"

    @property
    def _partial(self) -> Path:
        """Where the chunks are appended: beside a local folder, in a local
        temporary folder for a remote one."""
        if self._is_local:
            return self._path.with_name(self._path.name + ".partial")
        return self._spool

    def load(self) -> dict[str, np.ndarray]:
        if not self._exists():
            raise DatasetError(
                f"No arrays at '{self._shown_path}': run the node that writes this "
                "dataset first."
            )
        if self._is_local:
            return {
                file.stem: np.load(file, mmap_mode=self._load_args["mmap_mode"])
                for file in sorted(self._path.glob("*.npy"))
            }
        return {
            PurePosixPath(file).stem: self._read_remote(file)
            for file in sorted(self._fs.glob(f"{self._path}/*.npy"))
        }

    def _read_remote(self, file: str) -> np.ndarray:
        with self._fs.open(file, "rb") as stream:
            try:
                return np.load(stream, allow_pickle=False)
            except ValueError as err:
                raise DatasetError(
                    f"'{self._protocol}://{file.lstrip('/')}' is not a .npy array "
                    f"file ({err}); the folder holds only what this dataset saves."
                ) from err

    @property
    def _shown_path(self) -> str:
        """The path as given (a URL keeps its protocol), for messages."""
        return str(self._path) if self._is_local else self._url

    def save(self, data: dict[str, np.ndarray] | ArrayChunk) -> None:
        chunk = data if isinstance(data, ArrayChunk) else ArrayChunk(data, True, True)
        if chunk.first:
            self._start()
        elif self._rows is None:
            raise DatasetError(
                f"A chunk for '{self._shown_path}' arrived before its first chunk."
            )
        elif set(chunk.arrays) != set(self._rows):
            raise DatasetError(
                f"Chunk for '{self._shown_path}' has the arrays "
                f"{sorted(chunk.arrays)}; the first chunk had {sorted(self._rows)}."
            )
        for key, array in chunk.arrays.items():
            self._append(key, np.ascontiguousarray(array), new=chunk.first)
        if chunk.last:
            self._publish()

    def _start(self) -> None:
        """Discards an unfinished stream and starts an empty partial folder."""
        if self._is_local:
            shutil.rmtree(self._partial, ignore_errors=True)
            self._partial.mkdir(parents=True)
        else:
            self._discard_spool()
            self._spool = Path(tempfile.mkdtemp(prefix="array-folder-"))
        self._rows = {}

    def _append(self, key: str, array: np.ndarray, *, new: bool) -> None:
        if array.dtype.hasobject or array.ndim == 0:
            raise DatasetError(
                f"Array '{key}' for '{self._shown_path}' must have rows and a "
                f"fixed-size dtype (got {array.dtype}, {array.ndim} dimensions); "
                "store strings as fixed-width unicode (astype(str))."
            )
        file = self._partial / f"{key}.npy"
        if new:
            self._rows[key] = (array.dtype, array.shape[1:], 0)
            with file.open("wb") as stream:
                stream.write(_npy_header(array.dtype, (0, *array.shape[1:])))
        dtype, tail, rows = self._rows[key]
        if (array.dtype, array.shape[1:]) != (dtype, tail):
            raise DatasetError(
                f"Array '{key}' for '{self._shown_path}' changed from {dtype} rows "
                f"of shape {tail} to {array.dtype} rows of shape {array.shape[1:]}."
            )
        with file.open("ab") as stream:
            stream.write(array.data)
        self._rows[key] = (dtype, tail, rows + len(array))

    def _publish(self) -> None:
        """Writes the final shapes, then swaps the complete folder in."""
        for key, (dtype, tail, rows) in self._rows.items():
            with (self._partial / f"{key}.npy").open("r+b") as stream:
                stream.write(_npy_header(dtype, (rows, *tail)))
        if self._is_local:
            old = self._path.with_name(self._path.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            if self._path.exists():
                self._path.rename(old)
            self._partial.rename(self._path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            self._upload()
        self._rows = None

    def _upload(self) -> None:
        """Uploads the spooled files beside the remote folder, then moves them
        in (server-side copies on object stores): the previous folder stays
        whole until the upload has succeeded."""
        fs, root = self._fs, str(self._path)
        partial = f"{root}.partial"
        if fs.exists(partial):
            fs.rm(partial, recursive=True)
        fs.makedirs(partial, exist_ok=True)
        names = sorted(f"{key}.npy" for key in self._rows)
        for name in names:
            fs.put_file(str(self._spool / name), f"{partial}/{name}")
        if fs.exists(root):
            fs.rm(root, recursive=True)
        fs.makedirs(root, exist_ok=True)
        for name in names:
            fs.mv(f"{partial}/{name}", f"{root}/{name}")
        if fs.exists(partial):
            fs.rm(partial, recursive=True)
        fs.invalidate_cache(root)
        self._discard_spool()

    def _discard_spool(self) -> None:
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None

    def _exists(self) -> bool:
        if self._is_local:
            return self._path.is_dir()
        self._fs.invalidate_cache(str(self._path))
        return bool(self._fs.glob(f"{self._path}/*.npy"))

    def _describe(self) -> dict[str, Any]:
        return {"path": self._shown_path, "load_args": self._load_args}

    def preview(self) -> JSONPreview:
        """Shape and dtype of every array (read from the headers), shown by
        kedro-viz."""
        headers = {}
        if self._exists():
            opener = open if self._is_local else self._fs.open
            for file in self._files():
                with opener(file, "rb") as stream:
                    shape, _, dtype = _read_header(stream)
                headers[PurePosixPath(file).stem] = {
                    "shape": list(shape),
                    "dtype": str(dtype),
                }
        return JSONPreview(json.dumps(headers))

    def _files(self) -> list[str]:
        if self._is_local:
            return [str(file) for file in sorted(self._path.glob("*.npy"))]
        return sorted(self._fs.glob(f"{self._path}/*.npy"))


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


def _read_header(stream: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from an open ``.npy`` file's header."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    return np.lib.format.read_array_header_2_0(stream)


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
