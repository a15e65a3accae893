"""Offline text-to-speech with eSpeak NG, through a small ctypes wrapper.

The shared library and its voice data come from the ``espeakng-loader`` package
(GPL, installed by the optional ``demo`` extra: ``pip install -e ".[demo]"``); this
module loads it at run time only and never vendors it.

libespeak-ng keeps global state and is not thread-safe, so every call goes through
one module-level lock and the library is initialised once per process. Its output
depends on that state: the same text synthesised twice in one process gives two
slightly different waveforms (pitch flutter and wave phase carry over from one
utterance to the next, and the noise generator is seeded from the clock). Two
things make output reproducible:

- ``seed`` in :func:`synthesize` reseeds eSpeak NG's noise generator;
- :func:`synthesize_batch` runs a whole batch, in order, in a fresh process.

Examples
--------
>>> from multimodal_fusion.speech import SAMPLE_RATE, synthesize
>>> waveform = synthesize("Hello there", voice="en-gb-scotland", variant="m3")
>>> waveform.dtype, SAMPLE_RATE
(dtype('float32'), 22050)
"""

from __future__ import annotations

import ctypes
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 22_050
"""eSpeak NG's native output rate, in Hz."""

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EE_OK = 0
_RATE_LIMITS = (80, 450)
_PITCH_LIMITS = (0, 99)
_INT16_SCALE = np.float32(32768.0)

_LOCK = threading.Lock()
_STATE: dict[str, Any] = {"lib": None}
_CHUNKS: list[np.ndarray] = []

_CALLBACK_TYPE = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


def _collect_samples(wav: Any, n_samples: int, _events: Any) -> int:
    """Synth callback: copies each block of int16 samples; 0 means continue."""
    if wav and n_samples > 0:
        _CHUNKS.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
    return 0


# Module level on purpose: libespeak-ng keeps a raw pointer to this object, which
# must outlive every call to ``espeak_Synth``.
_CALLBACK = _CALLBACK_TYPE(_collect_samples)


def _loader() -> Any:
    try:
        import espeakng_loader  # noqa: PLC0415
    except ImportError as err:
        raise ImportError(
            "Speech synthesis needs the optional 'espeakng-loader' package (GPL). "
            'Install it with `pip install -e ".[demo]"`.'
        ) from err
    return espeakng_loader


def _declare(lib: ctypes.CDLL) -> None:
    """Declares the C signatures used here, so ctypes converts arguments safely."""
    c_int, c_uint, c_void_p = ctypes.c_int, ctypes.c_uint, ctypes.c_void_p
    signatures = {
        "espeak_Initialize": ([c_int, c_int, ctypes.c_char_p, c_int], c_int),
        "espeak_SetSynthCallback": ([_CALLBACK_TYPE], None),
        "espeak_SetVoiceByName": ([ctypes.c_char_p], c_int),
        "espeak_SetParameter": ([c_int, c_int, c_int], c_int),
        "espeak_Synth": (
            [c_void_p, ctypes.c_size_t, c_uint, c_int, c_uint, c_uint]
            + [c_void_p, c_void_p],
            c_int,
        ),
        "espeak_Synchronize": ([], c_int),
    }
    if hasattr(lib, "espeak_ng_SetRandSeed"):  # eSpeak NG >= 1.52
        signatures["espeak_ng_SetRandSeed"] = ([ctypes.c_long], None)
    for name, (argtypes, restype) in signatures.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = restype


def _library() -> ctypes.CDLL:
    """Loads and initialises libespeak-ng once per process; call under ``_LOCK``."""
    if _STATE["lib"] is not None:
        return _STATE["lib"]
    loader = _loader()
    lib = ctypes.CDLL(loader.get_library_path())
    _declare(lib)
    data_path = loader.get_data_path()
    sample_rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT
    )
    if sample_rate != SAMPLE_RATE:
        raise RuntimeError(
            f"libespeak-ng failed to initialise with data at '{data_path}' "
            f"(returned {sample_rate}, expected a rate of {SAMPLE_RATE} Hz)."
        )
    lib.espeak_SetSynthCallback(_CALLBACK)
    _STATE["lib"] = lib
    return lib


def english_voices() -> list[str]:
    """English voices (accents) shipped with the installed eSpeak NG data.

    Returns
    -------
    list of str
        Lower-case voice names usable as ``voice`` in :func:`synthesize`, e.g.
        ``["en", "en-029", "en-gb-scotland", ..., "en-us-nyc"]``. The Shavian
        alphabet voice is left out: it reads another script.
    """
    lang_dir = Path(_loader().get_data_path()) / "lang" / "gmw"
    return sorted(
        path.name.lower()
        for path in lang_dir.glob("en*")
        if path.is_file() and path.name.lower() != "en-shaw"
    )


def voice_variants() -> list[str]:
    """Voice variants (timbres) shipped with the installed eSpeak NG data.

    Returns
    -------
    list of str
        Variant names usable as ``variant`` in :func:`synthesize` (``"m1"``,
        ``"f2"``, ``"klatt"``, ...); empty when the data ships no variants.
    """
    variants_dir = Path(_loader().get_data_path()) / "voices" / "!v"
    if not variants_dir.is_dir():
        return []
    return sorted(path.name for path in variants_dir.iterdir() if path.is_file())


def synthesize(
    text: str,
    *,
    voice: str = "en-us",
    variant: str | None = None,
    rate: int = 175,
    pitch: int = 50,
    seed: int | None = None,
) -> np.ndarray:
    """Synthesises ``text`` to a mono waveform at :data:`SAMPLE_RATE` (22,050 Hz).

    Parameters
    ----------
    text : str
        What to say, as plain text.
    voice : str, default="en-us"
        Voice (language and accent), e.g. ``"en-gb-x-rp"``; see
        :func:`english_voices`.
    variant : str or None, default=None
        Timbre variant such as ``"m3"`` or ``"f2"``; see :func:`voice_variants`.
    rate : int, default=175
        Speaking rate in words per minute, within [80, 450].
    pitch : int, default=50
        Base pitch, within [0, 99].
    seed : int or None, default=None
        Reseeds eSpeak NG's noise generator (breathy variants use it) before
        synthesis. ``None`` keeps the generator's state, seeded from the clock.

    Returns
    -------
    numpy.ndarray
        float32 samples in [-1, 1], shape ``(n_samples,)``.

    Raises
    ------
    ImportError
        When ``espeakng-loader`` is not installed.
    ValueError
        When ``rate`` or ``pitch`` is out of range, or the voice is unknown.
    RuntimeError
        When libespeak-ng fails to initialise or to synthesise.
    """
    if not _RATE_LIMITS[0] <= rate <= _RATE_LIMITS[1]:
        raise ValueError(f"rate must be within {_RATE_LIMITS} words/min, got {rate}.")
    if not _PITCH_LIMITS[0] <= pitch <= _PITCH_LIMITS[1]:
        raise ValueError(f"pitch must be within {_PITCH_LIMITS}, got {pitch}.")
    name = f"{voice}+{variant}" if variant else voice
    encoded = text.encode("utf-8") + b"\0"
    with _LOCK:
        lib = _library()
        if lib.espeak_SetVoiceByName(name.encode()) != _EE_OK:
            raise ValueError(
                f"Unknown eSpeak NG voice '{name}'. Voices: {english_voices()}; "
                f"variants: {voice_variants()}."
            )
        lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
        lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
        if seed is not None and hasattr(lib, "espeak_ng_SetRandSeed"):
            lib.espeak_ng_SetRandSeed(int(seed) % 2**31)
        _CHUNKS.clear()
        try:
            status = lib.espeak_Synth(
                encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            if status != _EE_OK:
                raise RuntimeError(f"espeak_Synth failed with code {status}.")
            lib.espeak_Synchronize()
            samples = np.concatenate(_CHUNKS) if _CHUNKS else np.zeros(0, np.int16)
        finally:
            _CHUNKS.clear()
    return samples.astype(np.float32) / _INT16_SCALE


def _worker_main() -> None:
    """Entry point of the worker process started by :func:`synthesize_batch`: reads
    pickled requests on stdin, writes pickled int16 waveforms on stdout."""
    requests = pickle.load(sys.stdin.buffer)
    pcm = [
        np.round(synthesize(**request) * _INT16_SCALE).astype(np.int16)
        for request in requests
    ]
    pickle.dump(pcm, sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)
    sys.stdout.buffer.flush()


def _run_worker(requests: list[dict[str, Any]]) -> list[np.ndarray]:
    """Runs :func:`_worker_main` in a fresh interpreter (not ``multiprocessing``,
    which would re-import the caller's ``__main__`` script)."""
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [package_root, env.get("PYTHONPATH")])
    )
    code = f"from {__name__} import _worker_main; _worker_main()"
    completed = subprocess.run(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-c", code],
        input=pickle.dumps(requests, protocol=pickle.HIGHEST_PROTOCOL),
        capture_output=True,
        env=env,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            "The speech synthesis worker failed:\n"
            + completed.stderr.decode(errors="replace")
        )
    return pickle.loads(completed.stdout)  # noqa: S301 (written by our worker)


def synthesize_batch(
    requests: Sequence[Mapping[str, Any]], *, isolated: bool = True
) -> list[np.ndarray]:
    """Synthesises many utterances, reproducibly.

    Parameters
    ----------
    requests : sequence of mapping
        Keyword arguments of :func:`synthesize`, one mapping per utterance
        (``text`` required; give each a ``seed`` for reproducible output).
    isolated : bool, default=True
        Run the batch, in order, in a fresh worker process, so the output depends
        only on ``requests`` and not on what this process synthesised before.
        ``False`` runs in this process: reproducible only when this process makes
        the same sequence of calls from its start.

    Returns
    -------
    list of numpy.ndarray
        One float32 waveform at :data:`SAMPLE_RATE` per request, in order.

    Raises
    ------
    ImportError
        When ``espeakng-loader`` is not installed.
    RuntimeError
        When the worker process fails (its stderr is included).
    """
    if not requests:
        return []
    _loader()  # fail early, with the install hint, in the calling process
    if not isolated:
        return [synthesize(**request) for request in requests]
    pcm = _run_worker([dict(request) for request in requests])
    return [samples.astype(np.float32) / _INT16_SCALE for samples in pcm]
