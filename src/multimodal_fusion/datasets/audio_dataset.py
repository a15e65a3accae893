"""``AudioDataset`` loads and saves one audio clip as a float32 waveform plus its
sample rate, on any filesystem fsspec reaches (local, S3, GCS, ...). Decoding and
encoding go through libsndfile (``soundfile``), so every format it reads works:
WAV, FLAC, OGG/Vorbis, AIFF, ... at any sample rate, mono or multichannel.

Use it inside a ``partitions.PartitionedDataset`` to treat a folder of clips as one
catalog entry whose clips load lazily, one at a time.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import PurePosixPath
from typing import Any, NamedTuple

import fsspec
import numpy as np
import soundfile as sf
from fsspec.core import split_protocol
from kedro.io.core import (
    DatasetError,
    get_filepath_str,
)
from kedro_datasets._typing import JSONPreview

from .file_dataset import FileDataset


class AudioClip(NamedTuple):
    """A decoded clip.

    Attributes:
        waveform: float32 samples in [-1, 1], shape ``(n_samples,)`` for mono or
            ``(n_samples, n_channels)`` for multichannel (soundfile's layout).
        sample_rate: samples per second.
    """

    waveform: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.waveform) / self.sample_rate if self.sample_rate else 0.0


class AudioInfo(NamedTuple):
    """What a clip's header says, read without decoding the samples.

    Attributes:
        sample_rate: samples per second.
        channels: number of channels.
        frames: samples per channel the file holds (libsndfile's count).
        format: container, e.g. ``"WAV"``, ``"FLAC"``.
        subtype: sample encoding, e.g. ``"PCM_16"``, ``"FLOAT"``.
        missing_bytes: how many bytes of audio data the header declares beyond
            the end of the file (a truncated copy); 0 for a whole file.
    """

    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str
    missing_bytes: int = 0

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


# libsndfile's parse log says "data : 32000 (should be 15978)" for a WAV/AIFF
# whose data chunk runs past the end of the file.
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)
_DECODE_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError, ValueError)


class AudioDecodeError(DatasetError):
    """A file that cannot be read as audio, with the kind of defect.

    Attributes:
        kind: ``"empty_file"`` (0 bytes), ``"unrecognised_format"`` (not a format
            libsndfile reads, e.g. a text file renamed ``.wav``),
            ``"corrupt_header"``, ``"corrupt_data"`` (decoding failed part-way)
            or ``"unreadable"`` (the file could not be opened).
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def _decode_error(path: str, err: Exception, decoded: int = 0) -> AudioDecodeError:
    """An ``AudioDecodeError`` naming the file, the defect and what to do."""
    message = str(err).splitlines()[-1] if str(err) else type(err).__name__
    if decoded:
        kind, what = "corrupt_data", f"decoding failed after {decoded} samples"
    elif "not recognised" in message or "unknown format" in message.lower():
        kind = "unrecognised_format"
        what = "it is not in an audio format libsndfile reads"
    else:
        kind, what = "corrupt_header", "its header is damaged"
    return AudioDecodeError(
        f"Cannot decode audio file '{path}': {what} ({message}). Convert it to WAV, "
        "FLAC or OGG, or remove it.",
        kind,
    )


def read_clip(
    source: Any, *, load_args: dict[str, Any], name: str | None = None
) -> AudioClip:
    """Decodes a local path (libsndfile's own I/O: 2-3x faster than through a
    Python file object) or an open file with ``soundfile.read(**load_args)``.

    Raises:
        FileNotFoundError: when there is no file at the path.
        AudioDecodeError: naming the file and the defect, when libsndfile
            cannot decode it.
    """
    name = name or source
    if isinstance(source, str) and not os.path.isfile(source):
        raise FileNotFoundError(f"No audio file at '{name}'")
    try:
        waveform, sample_rate = sf.read(source, **load_args)
    except _DECODE_ERRORS as err:
        raise _decode_error(name, err) from err
    return AudioClip(waveform, int(sample_rate))


def local_path(path: str) -> str | None:
    """The local path of ``path`` (a plain path or a ``file://`` URL), or None
    for a URL of another fsspec protocol."""
    protocol, stripped = split_protocol(path)
    if protocol is None:
        return path
    return stripped if protocol in ("file", "local") else None


def open_path(path: str, storage_options: dict[str, Any] | None = None) -> Any:
    """Opens a clip file for reading, wherever it is: a local path (or a
    ``file://`` URL) with ``open``, a URL of any other fsspec protocol
    (``s3://bucket/clip.flac``) through fsspec with ``storage_options``
    (credentials and filesystem arguments). What a worker process or a Dask
    worker receives is the path string and the options, never an open file."""
    local = local_path(path)
    if local is not None:
        return open(local, "rb")  # the caller closes it
    return fsspec.open(path, "rb", **(storage_options or {})).open()


def read_clip_at(
    path: str,
    *,
    load_args: dict[str, Any],
    storage_options: dict[str, Any] | None = None,
) -> AudioClip:
    """Decodes the clip at a local path or fsspec URL (see :func:`open_path`):
    a local file with libsndfile's own I/O, the fast path; a remote one
    through an fsspec file object.

    Raises:
        FileNotFoundError: when there is no local file at the path.
        AudioDecodeError: naming the path, when a remote file cannot be opened
            or any file cannot be decoded.
    """
    local = local_path(path)
    if local is not None:
        return read_clip(local, load_args=load_args, name=path)
    with open_clip(partial(open_path, path, storage_options), path) as fs_file:
        return read_clip(fs_file, load_args=load_args, name=path)


@contextmanager
def open_clip(open_file: Callable[[], Any], name: str) -> Iterator[Any]:
    """``open_file()`` as a context manager; an ``OSError`` (no such file,
    permission denied, a folder) becomes an ``AudioDecodeError`` of kind
    ``"unreadable"`` naming the file."""
    try:
        fs_file = open_file()
    except OSError as err:
        raise AudioDecodeError(
            f"Cannot open audio file '{name}': {err.strerror or err}.",
            "unreadable",
        ) from err
    with fs_file:
        yield fs_file


def read_info(fs_file: Any, *, name: str) -> AudioInfo:
    """Reads the header of an open clip file only (see ``AudioDataset.info``).

    Raises:
        AudioDecodeError: when the file is empty or its header unreadable.
    """
    if not fs_file.read(1):
        raise AudioDecodeError(
            f"Audio file '{name}' is empty (0 bytes): the copy or "
            "export that made it failed. Copy it again or remove it.",
            "empty_file",
        )
    fs_file.seek(0)
    try:
        header = sf.info(fs_file)
    except _DECODE_ERRORS as err:
        raise _decode_error(name, err) from err
    missing = sum(
        max(int(declared) - int(present), 0)
        for declared, present in _SHORT_CHUNK.findall(header.extra_info)
    )
    return AudioInfo(
        sample_rate=int(header.samplerate),
        channels=int(header.channels),
        frames=int(header.frames),
        format=str(header.format),
        subtype=str(header.subtype),
        missing_bytes=missing,
    )


def read_blocks(fs_file: Any, *, name: str, blocksize: int) -> Iterator[np.ndarray]:
    """Decodes an open clip file block by block (see ``AudioDataset.blocks``).

    Raises:
        AudioDecodeError: when decoding fails, naming the file and position.
    """
    decoded = 0
    try:
        with sf.SoundFile(fs_file) as sound:
            while True:
                block = sound.read(blocksize, dtype="float32", always_2d=True)
                if not len(block):
                    return
                decoded += len(block)
                yield block
    except _DECODE_ERRORS as err:
        raise _decode_error(name, err, decoded) from err


_FORMATS_BY_SUFFIX = {f".{ext.lower()}": ext for ext in sf.available_formats()}
_FORMATS_BY_SUFFIX[".oga"] = "OGG"


class AudioDataset(FileDataset[AudioClip, AudioClip]):
    """``AudioDataset`` loads/saves one audio file as an ``AudioClip``.

    The suffix of ``filepath`` picks the format on save (``.wav``, ``.flac``,
    ``.ogg``, ...); on load libsndfile reads the header, so the suffix does not
    matter. ``load_args`` go to ``soundfile.read`` (for example ``frames`` and
    ``start`` to read part of a clip, or ``always_2d``); the waveform is float32
    unless ``dtype`` is overridden. ``save_args`` go to ``soundfile.write``,
    chiefly ``subtype`` (``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``, ...; by default
    libsndfile's default for the format). The other arguments are
    :class:`~multimodal_fusion.datasets.file_dataset.FileDataset`'s.

    Examples:
        Using the catalog (YAML), one clip:

        .. code-block:: yaml

            greeting:
              type: multimodal_fusion.datasets.AudioDataset
              filepath: data/01_raw/greeting.flac
              versioned: true

        A folder of clips, loaded lazily (file stem = partition id):

        .. code-block:: yaml

            raw_audio:
              type: partitions.PartitionedDataset
              path: data/01_raw/audio
              dataset: multimodal_fusion.datasets.AudioDataset

        Using the Python API:

        >>> import numpy as np
        >>> from multimodal_fusion.datasets import AudioClip, AudioDataset
        >>> dataset = AudioDataset(filepath=tmp_path / "tone.wav")  # doctest: +SKIP
        >>> dataset.save(AudioClip(np.zeros(800, np.float32), 8000))  # doctest: +SKIP
        >>> dataset.load().sample_rate  # doctest: +SKIP
        8000
    """

    DEFAULT_LOAD_ARGS: dict[str, Any] = {"dtype": "float32"}
    DEFAULT_SAVE_ARGS: dict[str, Any] = {}
    DEFAULT_FS_ARGS: dict[str, Any] = {
        "open_args_load": {"mode": "rb"},
        "open_args_save": {"mode": "wb"},
    }

    def load(self) -> AudioClip:
        load_path = self._load_path()
        if self._protocol == "file":
            return read_clip(load_path, load_args=self._load_args)
        with self._open(load_path) as fs_file:
            return read_clip(fs_file, load_args=self._load_args, name=load_path)

    def info(self) -> AudioInfo:
        """Reads the header only (rate, channels, frames, format): cheap for any
        clip length, so callers can reject huge clips without decoding them.

        Raises:
            AudioDecodeError: when the file is empty or its header unreadable.
        """
        load_path = self._load_path()
        with self._open(load_path) as fs_file:
            return read_info(fs_file, name=load_path)

    def blocks(self, blocksize: int = 65536) -> Iterator[np.ndarray]:
        """Decodes the clip block by block: float32 arrays of shape
        ``(<= blocksize, channels)``, until the decoder has no more samples.

        Memory stays at one block whatever the clip length.

        Raises:
            AudioDecodeError: when decoding fails, naming the file and position.
        """
        load_path = self._load_path()
        with self._open(load_path) as fs_file:
            yield from read_blocks(fs_file, name=load_path, blocksize=blocksize)

    def _open(self, load_path: str) -> Any:
        return open_clip(
            partial(self._fs.open, load_path, **self._fs_open_args_load), load_path
        )

    def save(self, data: AudioClip) -> None:
        save_path = self._get_save_path()
        audio_format = self._format_for(save_path)
        waveform, sample_rate = data
        with self._fs.open(
            get_filepath_str(save_path, self._protocol), **self._fs_open_args_save
        ) as fs_file:
            sf.write(
                fs_file,
                np.asarray(waveform),
                int(sample_rate),
                format=audio_format,
                **self._save_args,
            )
        self._invalidate_cache()

    def preview(self) -> JSONPreview:
        """Header and level summary of the clip, shown by kedro-viz."""
        clip = self.load()
        mono = clip.waveform if clip.waveform.ndim == 1 else clip.waveform.mean(axis=1)
        summary = {
            "sample_rate": clip.sample_rate,
            "channels": 1 if clip.waveform.ndim == 1 else clip.waveform.shape[1],
            "duration_s": round(clip.duration, 3),
            "peak": round(float(np.max(np.abs(mono), initial=0.0)), 4),
            "rms": round(float(np.sqrt(np.mean(mono**2))) if mono.size else 0.0, 4),
        }
        return JSONPreview(json.dumps(summary))

    @staticmethod
    def _format_for(path: PurePosixPath) -> str:
        suffix = path.suffix.lower()
        if suffix not in _FORMATS_BY_SUFFIX:
            raise DatasetError(
                f"Cannot save audio to '{path}': the suffix '{suffix}' names no format "
                f"libsndfile writes. Use one of {sorted(_FORMATS_BY_SUFFIX)}."
            )
        return _FORMATS_BY_SUFFIX[suffix]
