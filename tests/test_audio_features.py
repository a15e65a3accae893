import numpy as np

from multimodal_fusion.audio_features import log_mel, pooled_statistics


def _tone(sample_rate, seconds, amplitude=0.5):
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


def test_features_have_documented_shapes():
    mel = log_mel(
        _tone(16000, 1.0), sample_rate=16000, n_fft=512, hop_length=160, n_mels=40
    )
    assert mel.shape == (101, 40)
    stats = pooled_statistics(mel, n_mfcc=20, n_segments=4)
    assert stats.shape == (6 * 20 + 2 * 40 + 4 * 20,)
    assert np.isfinite(stats).all()
    assert pooled_statistics(mel[:1], n_mfcc=20, n_segments=4).shape == stats.shape
