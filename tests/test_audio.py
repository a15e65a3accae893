import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from multimodal_fusion.audio import (
    AudioFacts,
    AudioLimits,
    AudioProblem,
    DecodedSource,
    as_stored,
    clip_source,
    decode_mono,
    inspect_clip,
    prepare_clip,
    problem_with,
    to_mono,
)
from multimodal_fusion.datasets import AudioClip, AudioFolderDataset

PREP = {"sample_rate": 16000, "top_db": 30, "target_dbfs": -20.0}
REASONS = {
    "empty",
    "empty_file",
    "unrecognised_format",
    "corrupt_header",
    "corrupt_data",
    "truncated",
    "sample_rate_out_of_range",
    "too_short",
    "too_long",
    "non_finite_samples",
    "silent",
    "clipped",
    "unreadable",
}


def _tone(sample_rate, seconds, amplitude=0.5):
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


def test_to_mono_averages_channels():
    stereo = np.stack([np.ones(4), np.zeros(4)], axis=1).astype(np.float32)
    assert to_mono(stereo).tolist() == [0.5] * 4


def test_prepare_clip_resamples_trims_and_normalises():
    tone = _tone(22050, 1.0)
    padded = np.concatenate(
        [np.zeros(22050, np.float32), tone, np.zeros(11025, np.float32)]
    )
    clip = prepare_clip(AudioClip(padded, 22050), **PREP)
    assert clip.sample_rate == 16000
    assert clip.duration == pytest.approx(1.0, abs=0.15)  # 1.5 s of silence trimmed
    rms_db = 20 * np.log10(np.sqrt(np.mean(clip.waveform**2)))
    assert rms_db == pytest.approx(-20.0, abs=0.5)


def test_prepare_clip_never_cuts():
    clip = prepare_clip(AudioClip(_tone(16000, 3.0), 16000), **PREP)
    assert len(clip.waveform) == 48000


def test_prepare_clip_limits_the_peak():
    spiky = np.full(16000, 0.001, np.float32)
    spiky[100] = 1.0
    clip = prepare_clip(AudioClip(spiky, 16000), **{**PREP, "top_db": 200})
    assert np.max(np.abs(clip.waveform)) <= 1.0


@pytest.mark.parametrize(
    ("waveform", "reason"),
    [
        (np.zeros(0, np.float32), "empty"),
        (np.array([0.1, np.nan] * 2000, np.float32), "non_finite_samples"),
        (np.zeros(1000, np.float32), "silent"),
        (np.sign(_tone(16000, 0.5, 1.0)), "clipped"),
        (np.zeros(10, np.float32) + 0.5, "too_short"),
    ],
)
def test_problem_with_names_the_defect(waveform, reason):
    assert problem_with(AudioClip(waveform, 16000)).reason == reason


def test_problem_with_accepts_speechlike_audio():
    assert problem_with(AudioClip(_tone(16000, 0.1), 16000)) is None


def test_inspect_measures_a_usable_clip():
    stereo = np.stack([_tone(8000, 1.0), _tone(8000, 1.0)], axis=1)
    facts = inspect_clip(DecodedSource("x", AudioClip(stereo, 8000)))
    assert isinstance(facts, AudioFacts)
    assert (facts.sample_rate, facts.channels, facts.duration_s) == (8000, 2, 1.0)
    assert facts.peak_dbfs == pytest.approx(-6.02, abs=0.05)
    assert facts.clipped_share == 0


def test_limits_refuse_unknown_keys():
    with pytest.raises(ValueError, match=r"Unknown audio limit\(s\) \['max_secs'\]"):
        AudioLimits.from_params({"max_secs": 3})


# --- property tests: generated waveforms and headers ----------------------------

SUBTYPES = ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"]
FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}


@st.composite
def wav_files(draw):
    """A real WAV file's bytes and what went into it."""
    subtype = draw(st.sampled_from(SUBTYPES))
    rate = draw(
        st.one_of(
            st.sampled_from([8000, 11025, 16000, 44100, 48000, 96000]),
            st.integers(1, 400_000),
        )
    )
    channels = draw(st.integers(1, 3))
    frames = draw(st.integers(0, 3000))
    samples = draw(
        arrays(
            np.float32,
            (frames, channels),
            elements=st.floats(-1.5, 1.5, width=32, allow_nan=False),
        )
    )
    if subtype in FLOAT_SUBTYPES and frames and draw(st.booleans()):
        samples[draw(st.integers(0, frames - 1)), 0] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf])
        )
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue(), rate, samples


def _source_of(data: bytes, folder: Path):
    (folder / "clip.wav").write_bytes(data)
    return AudioFolderDataset(path=str(folder)).load()["clip.wav"]


@settings(max_examples=60, deadline=None)
@given(wav_files())
def test_inspection_of_generated_wavs_matches_their_content(wav):
    data, rate, samples = wav
    limits = AudioLimits(min_seconds=0.0001, max_seconds=60)
    with tempfile.TemporaryDirectory() as folder:
        result = inspect_clip(_source_of(data, Path(folder)), limits)
    finite = np.isfinite(samples).all()
    if not limits.min_sample_rate <= rate <= limits.max_sample_rate:
        assert result.reason == "sample_rate_out_of_range"
    elif not len(samples):
        assert result.reason == "empty"
    elif len(samples) / rate < limits.min_seconds:
        assert result.reason == "too_short"
    elif not finite:
        assert result.reason == "non_finite_samples"
    elif isinstance(result, AudioFacts):
        assert (result.sample_rate, result.channels) == (rate, samples.shape[1])
        assert result.duration_s == pytest.approx(len(samples) / rate, abs=1e-4)
    else:  # silent or clipped, depending on the drawn samples
        assert result.reason in {"silent", "clipped"}


@settings(max_examples=40, deadline=None)
@given(wav_files())
def test_prepared_clips_are_mono_finite_at_the_target_rate(wav):
    data, rate, samples = wav
    with tempfile.TemporaryDirectory() as folder:
        source = _source_of(data, Path(folder))
        if not isinstance(inspect_clip(source), AudioFacts):
            return
        clip = prepare_clip(decode_mono(source), **PREP)
    assert clip.sample_rate == 16000
    assert clip.waveform.ndim == 1 and clip.waveform.dtype == np.float32
    assert np.isfinite(clip.waveform).all()
    assert np.max(np.abs(clip.waveform)) <= 1.0


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.integers(0, 80),
    st.lists(st.tuples(st.integers(0, 79), st.integers(0, 255)), max_size=6),
    st.integers(0, 2000),
)
def test_damaged_headers_are_quarantined_never_raised(cut, flips, extra):
    """Truncated files and random bytes in the header: a reason, no exception."""
    buffer = io.BytesIO()
    sf.write(buffer, _tone(16000, 0.1), 16000, format="WAV", subtype="PCM_16")
    data = bytearray(buffer.getvalue()[: 44 + cut * extra // 40])
    for position, value in flips:
        if position < len(data):
            data[position] = value
    with tempfile.TemporaryDirectory() as folder:
        result = inspect_clip(_source_of(bytes(data), Path(folder)))
    assert isinstance(result, AudioFacts) or (
        isinstance(result, AudioProblem) and result.reason in REASONS
    ), result


def test_an_uploaded_clip_decodes_once_for_its_check_and_its_preparation():
    rate = 8000
    waveform = (0.3 * np.sin(np.arange(rate * 2) / 7)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, waveform, rate, format="FLAC")
    whole = clip_source("a.flac", buffer.getvalue())
    assert isinstance(inspect_clip(whole), AudioFacts)
    first, again = whole(), whole()
    np.testing.assert_array_equal(first.waveform, again.waveform)
    assert len(first.waveform) == len(waveform)
    # A decode stopped by the length check keeps nothing: the next one is whole.
    cut = clip_source("b.flac", buffer.getvalue())
    short = AudioLimits(min_seconds=0.0001, max_seconds=0.5)
    assert inspect_clip(cut, short).reason == "too_long"
    np.testing.assert_array_equal(cut().waveform, first.waveform)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_as_stored_equals_a_real_flac_round_trip_bit_for_bit(rate):
    rng = np.random.default_rng(7)
    half_steps = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 32766.5, 32767.5, -32768.5])
    waveform = np.concatenate(
        [
            rng.uniform(-1, 1, 50_000),
            rng.normal(0, 1e-3, 20_000),  # quiet samples, near the grid's step
            rng.uniform(-1.5, 1.5, 1_000),  # beyond full scale: clipped alike
            half_steps / 32768,
            [1.0, -1.0, 0.0],
        ]
    ).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, waveform, rate, format="FLAC")
    buffer.seek(0)
    expected, _ = sf.read(buffer, dtype="float32")

    stored = as_stored(AudioClip(waveform, rate))

    assert stored.sample_rate == rate
    assert stored.waveform.dtype == np.float32
    np.testing.assert_array_equal(stored.waveform, expected)
