"""The batched NumPy/SciPy features against librosa, the reference they replace."""

import librosa
import numpy as np
import pytest
import soundfile as sf

from multimodal_fusion.audio_features import (
    AudioFeatureExtractor,
    AudioStandardizer,
    log_mel,
    mel_filterbank,
    pad_frames,
    pooled_statistics,
)
from multimodal_fusion.datasets import AudioClip

CONFIGS = {  # the base parameters and the fsdd environment's
    16000: {"n_fft": 512, "hop_length": 160, "n_mels": 40},
    8000: {"n_fft": 256, "hop_length": 80, "n_mels": 40},
}
STATS = {"n_mfcc": 20, "n_segments": 4}


def _tone(sample_rate, seconds, amplitude=0.5):
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


def _librosa_features(
    waveform, sample_rate, *, n_fft, hop_length, n_mels, floor_db=80.0
):
    """What the project computed with librosa before: log-mel frames and the
    pooled statistics vector."""
    mel = librosa.feature.melspectrogram(
        y=waveform, sr=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels
    )
    frames = librosa.power_to_db(mel, ref=1.0, top_db=floor_db)
    mfcc = librosa.feature.mfcc(S=frames, n_mfcc=STATS["n_mfcc"])
    width = min(9, mfcc.shape[1] - (1 - mfcc.shape[1] % 2))
    if width >= 3:
        delta = librosa.feature.delta(mfcc, width=width)
        delta2 = librosa.feature.delta(mfcc, order=2, width=width)
    else:
        delta = delta2 = np.zeros_like(mfcc)
    parts = [
        f(b, axis=1) for b in (mfcc, delta, delta2, frames) for f in (np.mean, np.std)
    ]
    n = mfcc.shape[1]
    edges = np.linspace(0, n, STATS["n_segments"] + 1)
    starts = np.minimum(edges[:-1].astype(int), n - 1)
    stops = np.maximum(edges[1:].astype(int), starts + 1)
    parts += [mfcc[:, a:b].mean(axis=1) for a, b in zip(starts, stops, strict=True)]
    return frames.T, np.concatenate(parts)


def _random_clips(sample_rate, lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [
        AudioClip((0.2 * rng.standard_normal(n)).astype(np.float32), sample_rate)
        for n in lengths
    ]


def _assert_matches_librosa(clips, sample_rate, max_frames=10_000, floor_db=80.0):
    config = CONFIGS[sample_rate]
    extractor = AudioFeatureExtractor(
        sample_rate=sample_rate,
        **config,
        **STATS,
        max_frames=max_frames,
        floor_db=floor_db,
    )
    batch = extractor(clips)
    offset = 0
    for i, clip in enumerate(clips):
        frames, pooled = _librosa_features(
            clip.waveform, sample_rate, **config, floor_db=floor_db
        )
        kept = batch.frames[offset : offset + batch.n_frames[i]]
        offset += batch.n_frames[i]
        assert batch.frames_total[i] == len(frames)
        assert batch.n_frames[i] == min(len(frames), max_frames)
        np.testing.assert_allclose(kept, frames[:max_frames], atol=2e-3)
        np.testing.assert_allclose(batch.pooled[i], pooled, rtol=1e-4, atol=2e-3)
    assert offset == len(batch.frames)


@pytest.mark.filterwarnings("ignore:n_fft=.* is too large:UserWarning")
@pytest.mark.parametrize("sample_rate", sorted(CONFIGS))
def test_batched_features_equal_librosa_for_every_length(sample_rate):
    # 0 and 1 samples, fewer frames than every delta width, odd and even counts.
    hop = CONFIGS[sample_rate]["hop_length"]
    lengths = [0, 1, hop - 1, hop, 2 * hop, 3 * hop, 4 * hop + 1, 7 * hop, 8 * hop]
    lengths += [9 * hop - 1, sample_rate // 2, sample_rate * 2 + 7]
    _assert_matches_librosa(_random_clips(sample_rate, lengths), sample_rate)


@pytest.mark.parametrize("floor_db", [80.0, 50.0])
def test_batched_features_equal_librosa_on_spoken_digits(shared_data, floor_db):
    paths = sorted((shared_data / "fsdd" / "recordings").glob("*.wav"))[::60]
    clips = [AudioClip(*sf.read(path, dtype="float32")) for path in paths]
    _assert_matches_librosa(clips, 8000, floor_db=floor_db)


def test_frames_are_capped_but_statistics_use_the_whole_clip():
    clips = _random_clips(16000, [16000, 800])
    _assert_matches_librosa(clips, 16000, max_frames=30)


def test_without_max_frames_every_frame_is_kept():
    extractor = AudioFeatureExtractor(
        sample_rate=8000, **CONFIGS[8000], **STATS, max_frames=None
    )
    batch = extractor(_random_clips(8000, [80_000, 800]))
    np.testing.assert_array_equal(batch.n_frames, batch.frames_total)
    assert batch.n_frames[0] == 1001


def _spoken_with_digital_silence(sample_rate=8000):
    """Two vowel-like bursts (harmonics, rising then falling) separated and
    framed by exact digital silence, as in FSDD's recordings."""
    t = np.arange(int(0.25 * sample_rate)) / sample_rate
    envelope = np.sin(np.pi * t / t[-1]) ** 2
    burst = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((220, 440, 660), 1))
    silence = np.zeros(int(0.15 * sample_rate))
    wave = np.concatenate([silence, burst * envelope, silence, burst * envelope])
    return (0.3 * np.concatenate([wave, silence])).astype(np.float32)


@pytest.mark.parametrize("floor_db", [80.0, 50.0])
def test_the_floor_keeps_mild_noise_from_changing_the_frames(floor_db):
    from multimodal_fusion.robustness.sweeps import noisy_clip

    clean = AudioClip(_spoken_with_digital_silence(), 8000)
    noisy = noisy_clip(clean, "white", 30.0, np.random.default_rng(0))
    extractor = AudioFeatureExtractor(
        sample_rate=8000, **CONFIGS[8000], **STATS, max_frames=None, floor_db=floor_db
    )
    change = np.abs(extractor([clean]).frames - extractor([noisy]).frames).mean()
    # 80 dB of range keeps the silence's floor, which 30 dB noise lifts by tens
    # of dB; 50 dB puts the floor above the noise.
    assert change > 10 if floor_db == 80 else change < 2


def test_mel_filterbank_equals_librosa():
    for sample_rate, n_fft, n_mels in [(8000, 256, 40), (22050, 2048, 128)]:
        expected = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
        np.testing.assert_allclose(
            mel_filterbank(sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels),
            expected.T,
            atol=1e-7,
        )


def test_other_rates_are_resampled_like_librosa_and_stereo_is_averaged():
    extractor = AudioFeatureExtractor(
        sample_rate=16000, **CONFIGS[16000], **STATS, max_frames=400
    )
    slow = _tone(8000, 0.7)
    resampled = librosa.resample(
        slow, orig_sr=8000, target_sr=16000, res_type="soxr_hq"
    )
    stereo = np.stack([resampled, np.zeros_like(resampled)], axis=1)
    batch = extractor(
        [AudioClip(slow, 8000), AudioClip(resampled, 16000), AudioClip(stereo, 16000)]
    )
    np.testing.assert_allclose(batch.pooled[0], batch.pooled[1], atol=1e-4)
    halved = extractor([AudioClip(resampled / 2, 16000)]).pooled[0]
    np.testing.assert_allclose(batch.pooled[2], halved, atol=1e-4)


def test_single_clip_helpers_have_documented_shapes():
    mel = log_mel(_tone(16000, 1.0), sample_rate=16000, **CONFIGS[16000])
    assert mel.shape == (101, 40)
    stats = pooled_statistics(mel, **STATS)
    assert stats.shape == (6 * 20 + 2 * 40 + 4 * 20,)
    assert np.isfinite(stats).all()
    assert pooled_statistics(mel[:1], **STATS).shape == stats.shape


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="hop_length must be a positive integer"):
        AudioFeatureExtractor(
            sample_rate=16000, n_fft=512, hop_length=0, n_mels=40, **STATS, max_frames=9
        )
    with pytest.raises(ValueError, match="n_mfcc=50 exceeds n_mels=40"):
        AudioFeatureExtractor(
            sample_rate=16000,
            **CONFIGS[16000],
            n_mfcc=50,
            n_segments=4,
            max_frames=9,
        )


def test_a_clip_with_nan_samples_is_named():
    extractor = AudioFeatureExtractor(
        sample_rate=8000, **CONFIGS[8000], **STATS, max_frames=9
    )
    bad = np.array([0.1, np.nan, 0.2], np.float32)
    loaders = {
        "ok": lambda: AudioClip(_tone(8000, 0.2), 8000),
        "bad": lambda: AudioClip(bad, 8000),
    }
    with pytest.raises(ValueError, match="contact 'bad' holds NaN"):
        extractor.load_and_extract(loaders, ["ok", "bad"])


def test_pad_frames_places_each_clip_in_its_row():
    frames = np.arange(10, dtype=np.float32).reshape(5, 2)
    dense = pad_frames(frames, np.array([2, 0, 3]), 4)
    assert dense.shape == (3, 4, 2)
    np.testing.assert_array_equal(dense[0, :2], frames[:2])
    np.testing.assert_array_equal(dense[2, :3], frames[2:])
    assert not dense[1].any() and not dense[0, 2:].any() and not dense[2, 3:].any()


def test_streamed_standardizer_equals_one_fit_over_all_rows():
    rng = np.random.default_rng(1)
    pooled = rng.normal(50, 10, (300, 6)).astype(np.float32)
    frames = rng.normal(-40, 5, (4000, 3)).astype(np.float32)
    whole = AudioStandardizer().fit(pooled, frames)
    streamed = AudioStandardizer().fit(pooled[:0], frames[:0])
    for (a, b), (c, d) in zip(
        ((0, 1), (1, 120), (120, 300)), ((0, 7), (7, 1500), (1500, 4000)), strict=True
    ):
        streamed.partial_fit(pooled[a:b], frames[c:d])
    for name in ("pooled_mean_", "pooled_std_", "frame_mean_", "frame_std_"):
        np.testing.assert_allclose(
            getattr(streamed, name), getattr(whole, name), rtol=1e-6
        )
    np.testing.assert_allclose(whole.pooled_mean_, pooled.mean(0), rtol=1e-6)
    np.testing.assert_allclose(whole.frame_std_, frames.std(0), rtol=1e-5)
    assert streamed.n_clips_seen_ == 300


def test_standardizer_keeps_rows_without_audio_zero_and_constant_features_finite():
    pooled = np.array([[1.0, 5.0], [3.0, 5.0], [9.0, 9.0]], np.float32)
    frames = np.array([[2.0], [4.0], [7.0]], np.float32)
    standardizer = AudioStandardizer(eps=1e-3).fit(pooled[:2], frames)
    assert standardizer.pooled_std_[1] == pytest.approx(1e-3)
    scaled, scaled_frames = standardizer.transform(pooled, frames, np.array([2, 1, 0]))
    assert not scaled[2].any()
    np.testing.assert_allclose(scaled[:2, 0], [-1.0, 1.0])
    assert scaled_frames.dtype == np.float32 and np.isfinite(scaled).all()


def test_standardizer_without_training_clips_is_the_identity():
    standardizer = AudioStandardizer().fit(np.zeros((0, 2)), np.zeros((0, 3)))
    np.testing.assert_array_equal(standardizer.pooled_std_, [1, 1])
    np.testing.assert_array_equal(standardizer.frame_mean_, [0, 0, 0])
