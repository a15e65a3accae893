"""Audio preprocessing: validity checks, mono, resampling, trimming and loudness.
Features live in :mod:`multimodal_fusion.audio_features`.

Waveforms are float32 arrays of shape ``(n_samples,)`` (mono) or
``(n_samples, n_channels)`` (soundfile's layout).

A clip is checked without ever holding it whole: :func:`inspect_clip` reads its
header first (rate, length: a 30-minute file is rejected there, undecoded), then
decodes it block by block for the sample checks. :func:`decode_mono` later
decodes it block by block into one mono array for :func:`prepare_clip`.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any, NamedTuple, Protocol

import librosa
import numpy as np
import soundfile as sf
from kedro.io.core import DatasetError

from multimodal_fusion.datasets import AudioClip, AudioInfo
from multimodal_fusion.datasets.audio_dataset import (
    AudioDataset,
    AudioDecodeError,
    read_blocks,
    read_clip,
    read_info,
)

SILENCE_PEAK = 1e-4  # -80 dBFS
CLIPPING_LEVEL = 0.99  # a sample at or above this magnitude counts as clipped
BLOCKSIZE = 65536  # samples per channel decoded at a time
# A header's frame count may be an estimate (MP3): a shortfall within this many
# samples is not taken for a truncated file.
_FRAME_TOLERANCE = 2048
# Samples per frame of the SNR estimate (64 ms at 16 kHz), and its ceiling.
SNR_FRAME = 1024
MAX_SNR_DB = 100.0
_DRIVE_OR_PROTOCOL = re.compile(r"^([A-Za-z]:[\\/]|[A-Za-z][\w+.-]*://)")


class AudioProblem(NamedTuple):
    """Why a clip is rejected: a stable ``reason`` code and a ``detail`` that
    says what is wrong and what to do."""

    reason: str
    detail: str


class AudioFacts(NamedTuple):
    """What the checks measured on a usable clip (before preparation)."""

    sample_rate: int
    channels: int
    duration_s: float
    format: str
    peak_dbfs: float
    rms_dbfs: float
    clipped_share: float
    snr_db: float


class AudioLimits(NamedTuple):
    """Bounds outside which a clip is rejected (never cut or padded).

    Attributes:
        min_seconds: Shorter clips are rejected (``too_short``).
        max_seconds: Longer clips are rejected (``too_long``) from their header,
            without being decoded.
        min_sample_rate: Lower rates are rejected (``sample_rate_out_of_range``).
        max_sample_rate: Higher rates are rejected likewise.
        max_clipped_share: Clips with a larger share of samples at full scale
            are rejected (``clipped``); fewer clipped samples only show in the
            index.
    """

    min_seconds: float = 0.05
    max_seconds: float = 60.0
    min_sample_rate: int = 4000
    max_sample_rate: int = 384000
    max_clipped_share: float = 0.2

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> AudioLimits:
        """Limits from the ``limits`` parameters; absent keys keep defaults."""
        unknown = set(params or {}) - set(cls._fields)
        if unknown:
            raise ValueError(
                f"Unknown audio limit(s) {sorted(unknown)} in "
                f"data_processing.audio.limits; known: {list(cls._fields)}."
            )
        return cls(**(params or {}))


DEFAULT_LIMITS = AudioLimits()


class ClipSource(Protocol):
    """A clip not decoded yet (an ``AudioSource`` of ``AudioFolderDataset``)."""

    key: str
    refusal: tuple[str, str] | None

    def __call__(self) -> AudioClip: ...

    def info(self) -> AudioInfo: ...

    def blocks(self, blocksize: int = BLOCKSIZE) -> Iterator[np.ndarray]: ...


class DecodedSource:
    """A :class:`ClipSource` over a clip that is already in memory, or over a
    plain loader (for example a ``MemoryDataset`` of clips or callables)."""

    refusal = None

    def __init__(self, key: str, clip: AudioClip | Callable[[], AudioClip]) -> None:
        self.key = key
        self._clip = clip

    def __call__(self) -> AudioClip:
        try:
            clip = self._clip() if callable(self._clip) else self._clip
            waveform, sample_rate = clip
        except Exception as err:  # a user-supplied loader: quarantine whatever fails
            raise AudioDecodeError(
                f"Cannot load clip '{self.key}': {err}", "unreadable"
            ) from err
        return AudioClip(np.asarray(waveform), int(sample_rate))

    def info(self) -> AudioInfo:
        clip = self()
        waveform = _as_2d(clip.waveform)
        return AudioInfo(clip.sample_rate, waveform.shape[1], len(waveform), "", "")

    def blocks(self, blocksize: int = BLOCKSIZE) -> Iterator[np.ndarray]:
        waveform = _as_2d(self().waveform)
        for start in range(0, len(waveform), blocksize):
            yield waveform[start : start + blocksize].astype(np.float32)


class EncodedSource:
    """A :class:`ClipSource` over the bytes of an audio file (an upload, say),
    decoded like a file on disk.

    A clip is decoded twice, to be checked and then to be prepared; the blocks
    of the first complete decode are kept for the second (the bytes are in
    memory already, and a decode cut short by the length check, or failing,
    keeps nothing), which halves the decoding cost of a served contact.
    """

    refusal = None

    def __init__(self, key: str, data: bytes) -> None:
        self.key = key
        self._data = data
        self._decoded: tuple[int, list[np.ndarray]] | None = None
        self._info: AudioInfo | None = None

    def __call__(self) -> AudioClip:
        return decode_mono(self)

    def info(self) -> AudioInfo:
        if self._info is None:  # read by the check, the decode and the index
            self._info = read_info(io.BytesIO(self._data), name=self.key)
        return self._info

    def blocks(self, blocksize: int = BLOCKSIZE) -> Iterator[np.ndarray]:
        if self._decoded and self._decoded[0] == blocksize:
            yield from self._decoded[1]
            return
        kept = []
        for block in read_blocks(
            io.BytesIO(self._data), name=self.key, blocksize=blocksize
        ):
            kept.append(block)
            yield block
        self._decoded = (blocksize, kept)


def clip_source(key: str, value: Any) -> ClipSource:
    """``value`` as a :class:`ClipSource`: a source passes through, the bytes of
    a file become an :class:`EncodedSource`, a clip or a loader is wrapped in a
    :class:`DecodedSource`."""
    if hasattr(value, "info") and hasattr(value, "blocks"):
        return value
    if isinstance(value, bytes | bytearray):
        return EncodedSource(key, bytes(value))
    return DecodedSource(key, value)


def _as_2d(waveform: np.ndarray) -> np.ndarray:
    waveform = np.asarray(waveform)
    return waveform if waveform.ndim == 2 else waveform.reshape(len(waveform), 1)


def to_mono(waveform: np.ndarray) -> np.ndarray:
    """Averages channels: ``(n, c)`` → ``(n,)``; mono passes through."""
    waveform = np.asarray(waveform, dtype=np.float32)
    return waveform.mean(axis=1, dtype=np.float32) if waveform.ndim == 2 else waveform


def _dbfs(value: float) -> float:
    return round(20 * math.log10(value), 2) if value > 0 else -math.inf


def _header_problem(info: AudioInfo, limits: AudioLimits) -> AudioProblem | None:
    if not limits.min_sample_rate <= info.sample_rate <= limits.max_sample_rate:
        return AudioProblem(
            "sample_rate_out_of_range",
            f"the sample rate is {info.sample_rate} Hz, outside "
            f"[{limits.min_sample_rate}, {limits.max_sample_rate}] Hz "
            "(data_processing.audio.limits): the header is wrong or the file is "
            "not a recording. Re-export it at a usual rate (8-48 kHz).",
        )
    if info.frames == 0:
        return AudioProblem("empty", "the file holds no samples")
    if info.duration < limits.min_seconds:
        return AudioProblem(
            "too_short",
            f"the clip lasts {info.duration:.4f} s, less than min_seconds "
            f"({limits.min_seconds} s, data_processing.audio.limits)",
        )
    if info.duration > limits.max_seconds:
        return AudioProblem(
            "too_long",
            f"the clip lasts {info.duration:.1f} s, more than max_seconds "
            f"({limits.max_seconds} s, data_processing.audio.limits); it was not "
            "decoded. Cut it to the part that matters or raise the limit.",
        )
    if info.missing_bytes:
        return AudioProblem(
            "truncated",
            f"the header declares {info.missing_bytes} more bytes of audio than the "
            "file holds: the copy was cut short. Copy or export it again.",
        )
    return None


class _Levels:
    """Running sample statistics over blocks, and the energy of every
    ``SNR_FRAME`` samples for the SNR estimate."""

    def __init__(self) -> None:
        self.frames = self.samples = self.non_finite = self.clipped = 0
        self.peak = self.sum_squares = 0.0
        self.frame_energies: list[np.ndarray] = []

    def add(self, block: np.ndarray) -> None:
        finite = np.isfinite(block)
        whole = len(block) // SNR_FRAME * SNR_FRAME
        if whole:
            mono = np.where(finite[:whole], block[:whole], 0.0).reshape(
                whole // SNR_FRAME, -1
            )
            self.frame_energies.append(np.mean(np.square(mono, dtype=np.float64), 1))
        self.frames += len(block)
        self.samples += block.size
        self.non_finite += int(block.size - np.count_nonzero(finite))
        magnitude = np.abs(np.where(finite, block, 0.0), dtype=np.float32)
        if magnitude.size:
            self.peak = max(self.peak, float(magnitude.max()))
        self.sum_squares += float(np.square(magnitude, dtype=np.float64).sum())
        self.clipped += int(np.count_nonzero(magnitude >= CLIPPING_LEVEL))

    def snr_db(self) -> float:
        """A blind SNR estimate: loud frames (95th percentile of frame energy)
        over quiet ones (10th percentile), in dB, within [0, ``MAX_SNR_DB``].
        Exact digital silence between words gives the maximum."""
        energies = np.concatenate(self.frame_energies or [np.zeros(1)])
        loud, quiet = np.percentile(energies, [95, 10])
        if loud <= 0:
            return 0.0
        ratio = 10 * math.log10(loud / max(quiet, loud * 10 ** (-MAX_SNR_DB / 10)))
        return round(min(max(ratio, 0.0), MAX_SNR_DB), 2)


def _level_problem(levels: _Levels, limits: AudioLimits) -> AudioProblem | None:
    if levels.samples == 0:
        return AudioProblem("empty", "the file holds no samples")
    if levels.non_finite:
        return AudioProblem(
            "non_finite_samples",
            f"{levels.non_finite} of {levels.samples} samples are NaN or infinite "
            "(a broken float WAV). Re-export the clip.",
        )
    if levels.peak < SILENCE_PEAK:
        return AudioProblem("silent", "the clip is silent: its peak is below -80 dBFS")
    share = levels.clipped / levels.samples
    if share > limits.max_clipped_share:
        return AudioProblem(
            "clipped",
            f"{share:.0%} of the samples are at full scale, more than "
            f"max_clipped_share ({limits.max_clipped_share:.0%}, "
            "data_processing.audio.limits): the recording is distorted.",
        )
    return None


def inspect_clip(
    source: ClipSource, limits: AudioLimits = DEFAULT_LIMITS
) -> AudioFacts | AudioProblem:
    """Checks a clip from its header, then block by block, never whole.

    Args:
        source: The clip, not decoded.
        limits: Bounds on rate, length and clipping.

    Returns:
        What was measured when the clip is usable, else why it is not.
    """
    if source.refusal:
        return AudioProblem(*source.refusal)
    try:
        info = source.info()
        problem = _header_problem(info, limits)
        if problem is None:
            levels, problem = _decode_levels(source, info, limits)
    except AudioDecodeError as err:
        return AudioProblem(err.kind, str(err))
    except (DatasetError, OSError) as err:
        return AudioProblem("unreadable", str(err))
    if problem is None:
        problem = _level_problem(levels, limits)
    if problem:
        return problem
    rms = math.sqrt(levels.sum_squares / levels.samples)
    return AudioFacts(
        sample_rate=info.sample_rate,
        channels=info.channels,
        duration_s=round(levels.frames / info.sample_rate, 4),
        format=f"{info.format}/{info.subtype}".strip("/"),
        peak_dbfs=_dbfs(levels.peak),
        rms_dbfs=_dbfs(rms),
        clipped_share=round(levels.clipped / levels.samples, 4),
        snr_db=levels.snr_db(),
    )


def _decode_levels(
    source: ClipSource, info: AudioInfo, limits: AudioLimits
) -> tuple[_Levels, AudioProblem | None]:
    """Sample statistics, decoding block by block; a header's length may lie
    (or be an estimate), so decoding stops past ``max_seconds``."""
    levels = _Levels()
    cap = math.ceil(limits.max_seconds * info.sample_rate) + 1
    for block in source.blocks(BLOCKSIZE):
        levels.add(block)
        if levels.frames > cap:
            return levels, AudioProblem(
                "too_long",
                f"the clip holds more than max_seconds ({limits.max_seconds} s) of "
                "audio although its header says less; decoding stopped.",
            )
    if levels.frames + _FRAME_TOLERANCE < info.frames:
        return levels, AudioProblem(
            "truncated",
            f"the header declares {info.frames} samples but only {levels.frames} "
            "could be decoded: the file was cut short. Copy or export it again.",
        )
    return levels, None


def problem_with(
    clip: AudioClip, limits: AudioLimits = DEFAULT_LIMITS
) -> AudioProblem | None:
    """Why a decoded clip cannot be used, or None when it can."""
    result = inspect_clip(DecodedSource("clip", clip), limits)
    return result if isinstance(result, AudioProblem) else None


def decode_mono(source: ClipSource) -> AudioClip:
    """Decodes a clip block by block into one mono float32 waveform, so a
    multichannel clip never sits in memory with all its channels."""
    rate = source.info().sample_rate
    blocks = [to_mono(block) for block in source.blocks(BLOCKSIZE)]
    waveform = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return AudioClip(waveform, rate)


def prepare_clip(
    clip: AudioClip, *, sample_rate: int, top_db: float, target_dbfs: float
) -> AudioClip:
    """Mono, resampled, trimmed and loudness-normalised clip.

    Args:
        clip: Decoded clip at any rate, mono or multichannel, finite samples.
        sample_rate: Target rate in Hz; resampling only happens when it differs.
        top_db: Edges quieter than this many dB below the peak are trimmed.
        target_dbfs: RMS level to normalise to; the peak is then limited to 1.

    Returns:
        The prepared clip. Nothing is cut: length limits reject clips upstream
        (:class:`AudioLimits`).
    """
    waveform = to_mono(clip.waveform)
    if clip.sample_rate != sample_rate:
        waveform = librosa.resample(
            waveform,
            orig_sr=clip.sample_rate,
            target_sr=sample_rate,
            res_type="soxr_hq",
        ).astype(np.float32)
    trimmed, _ = librosa.effects.trim(waveform, top_db=top_db)
    if trimmed.size:
        waveform = trimmed
    rms = float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))
    gain = 10 ** (target_dbfs / 20) / max(rms, 1e-8)
    waveform = waveform * gain
    peak = float(np.max(np.abs(waveform), initial=0.0))
    if peak > 1.0:
        waveform = waveform / peak
    return AudioClip(waveform.astype(np.float32), sample_rate)


def prepare_source(source: ClipSource, **params: Any) -> AudioClip:
    """:func:`decode_mono` then :func:`prepare_clip` with ``params``."""
    return prepare_clip(decode_mono(source), **params)


def key_problem(key: str) -> AudioProblem | None:
    """Why a clip's key (its path relative to the audio folder) must not be
    followed: an absolute path, a URL or a ``..`` that leaves the folder."""
    path = PurePosixPath(key.replace("\\", "/"))
    if not path.parts or path.is_absolute() or _DRIVE_OR_PROTOCOL.match(key):
        return AudioProblem(
            "outside_root",
            "the path is absolute or has a drive or protocol: audio paths must be "
            "relative to the audio folder",
        )
    if ".." in path.parts:
        return AudioProblem(
            "outside_root",
            "the path climbs out of the audio folder ('..'): audio paths must "
            "stay inside it",
        )
    return None


# The format ``clean_audio`` stores prepared clips in (conf/base/catalog.yml):
# feature extraction reads them back from it, so a clip prepared elsewhere passes
# through the same encoding before its features are computed.
CLEAN_AUDIO_FORMAT = "FLAC"


def as_stored(clip: AudioClip, audio_format: str = CLEAN_AUDIO_FORMAT) -> AudioClip:
    """The clip as it reads back after being saved in ``audio_format``.

    FLAC stores 16-bit PCM: libsndfile writes ``round(x * 32768)`` clipped to
    the int16 range and reads back ``/ 32768``, so that rounding is applied
    directly (bit-equal to the round trip, tested; 100x cheaper per served
    clip). Any other format is encoded and decoded in memory.
    """
    if audio_format.upper() == "FLAC":
        return AudioClip(_pcm16(clip.waveform), clip.sample_rate)
    buffer = io.BytesIO()
    sf.write(buffer, clip.waveform, clip.sample_rate, format=audio_format)
    buffer.seek(0)
    return read_clip(buffer, load_args=AudioDataset.DEFAULT_LOAD_ARGS, name="clip")


def _pcm16(waveform: np.ndarray) -> np.ndarray:
    """float32 samples rounded to the 16-bit grid libsndfile stores and reads."""
    scaled = np.rint(np.asarray(waveform, np.float32) * np.float32(32768))
    return (np.clip(scaled, -32768, 32767) / np.float32(32768)).astype(np.float32)
