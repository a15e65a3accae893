"""The frame model sees the whole clip: a long clip whose class is only audible
at its end is classified with the shipped parameters, and a configured
truncation is counted per clip and logged."""

import logging

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from multimodal_fusion import fusion
from multimodal_fusion.datasets import AudioFolderDataset
from multimodal_fusion.featurization import (
    extract_audio_features,
    gather_chunks,
    standardize_audio_features,
)
from multimodal_fusion.fusion import FusionClassifier, trim_padding
from multimodal_fusion.pipelines.feature_extraction.nodes import (
    fit_audio_standardizer,
)
from tests.conftest import PROJECT_ROOT

RATE = 16000  # data_processing.audio.sample_rate
SECONDS, TAIL = 5.0, 0.8  # the class tone sits in the last TAIL seconds
TONES = (500, 900, 1300, 1700)
SPLITS = {"train": 12, "val": 4, "test": 6}  # clips per class
SMALL_NETWORK = {
    "conv_channels": (16, 32),
    "branch_units": 32,
    "fusion_units": 32,
    "epochs": 30,
    "patience": 30,
    "seed": 0,
}


def _shipped_audio_params() -> dict:
    path = PROJECT_ROOT / "conf/base/parameters_feature_extraction.yml"
    params = yaml.safe_load(path.read_text())["feature_extraction"]["audio"]
    return {**params, "n_jobs": 1}


@pytest.fixture(scope="module")
def long_clips(tmp_path_factory):
    """Real 5 s WAV files, decoded from disk: noise and a hum shared by every
    class, then the class's tone in the last 0.8 s."""
    folder = tmp_path_factory.mktemp("long_clips")
    rng = np.random.default_rng(0)
    t = np.arange(int(RATE * SECONDS)) / RATE
    rows = []
    for split, per_class in SPLITS.items():
        for label, tone in enumerate(TONES):
            for i in range(per_class):
                wave = 0.05 * rng.standard_normal(t.size) + 0.2 * np.sin(
                    2 * np.pi * 300 * t
                )
                tail = t >= SECONDS - TAIL
                wave[tail] += 0.3 * np.sin(2 * np.pi * tone * t[tail])
                clip_id = f"{split}{label}{i:02d}"
                sf.write(folder / f"{clip_id}.wav", wave.astype(np.float32), RATE)
                rows.append((clip_id, split, label))
    contacts = pd.DataFrame(rows, columns=["id", "split", "label"])
    contacts["has_audio"] = True
    sources = AudioFolderDataset(path=str(folder)).load()  # by file name
    return contacts, {key.removesuffix(".wav"): sources[key] for key in sources}


def _features(contacts, clips, params):
    """Raw and standardised features through the feature_extraction nodes."""
    raw = gather_chunks(extract_audio_features(contacts, clips, params, RATE))
    standardizer = fit_audio_standardizer(contacts, raw)
    return raw, gather_chunks(standardize_audio_features(raw, standardizer))


def test_a_long_clip_is_classified_from_its_end(long_clips, caplog):
    contacts, clips = long_clips
    params = _shipped_audio_params()
    with caplog.at_level(logging.WARNING):
        raw, features = _features(contacts, clips, params)
    assert (raw["n_frames"] == raw["frames_total"]).all()
    assert raw["n_frames"][0] == 501 <= params["max_frames"]
    assert "longer than" not in caplog.text
    # The pooled statistics are a constant: only the frames tell the classes
    # apart, and only in the clips' last 0.8 s.
    inputs = {
        "audio": np.ones_like(features["pooled"]),
        "audio_frames": features["frames"],
    }

    def split(name):
        rows = (contacts["split"] == name).to_numpy()
        return {k: v[rows] for k, v in inputs.items()}, contacts["label"][rows]

    model = FusionClassifier(modalities=["audio"], **SMALL_NETWORK)
    model.fit(*split("train"), validation=split("val"))
    test_inputs, test_labels = split("test")
    assert np.mean(model.predict(test_inputs) == test_labels.to_numpy()) >= 0.9


def test_a_configured_truncation_is_counted_and_logged_once(long_clips, caplog):
    contacts, clips = long_clips
    params = {**_shipped_audio_params(), "max_frames": 400}  # the first 4 s
    with caplog.at_level(logging.WARNING):
        raw, features = _features(contacts, clips, params)
    assert (raw["frames_total"] == 501).all() and (raw["n_frames"] == 400).all()
    assert features["frames"].shape[1] == 400
    lines = [r.getMessage() for r in caplog.records if "longer than" in r.message]
    assert len(lines) == 1
    assert lines[0].startswith(f"{len(contacts)} of {len(contacts)} clips are longer")
    assert "first 4.0 s" in lines[0]


def _frames_problem(n=96, width=64, seed=0):
    """Clips of 10 to ``width`` frames, zero-padded; the class is a burst in
    one band."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    lengths = rng.integers(10, width + 1, n)
    frames = np.zeros((n, width, 8), np.float32)
    for row, length in enumerate(lengths):
        frames[row, :length] = rng.normal(0, 0.3, (length, 8))
        frames[row, : length // 2, y[row]] += 2.0
    return {
        "audio": rng.normal(size=(n, 4)).astype(np.float32),
        "audio_frames": frames,
    }, y


def _train(inputs, y):
    model = FusionClassifier(
        modalities=["audio"], **{**SMALL_NETWORK, "epochs": 3, "batch_size": 16}
    )
    return model.fit(inputs, y, validation=(inputs, y))


def _padded(inputs, extra):
    frames = inputs["audio_frames"]
    return {**inputs, "audio_frames": np.pad(frames, [(0, 0), (0, extra), (0, 0)])}


def test_trim_padding_cuts_after_the_longest_row_at_the_stride():
    frames = np.zeros((3, 100, 2), np.float32)
    frames[0, :20] = 1.0
    frames[2, :37, 1] = 1.0
    assert trim_padding(frames, 16).shape == (3, 48, 2)
    assert trim_padding(frames, 16)[:, :37].sum() == frames.sum()
    assert trim_padding(frames[:, :40], 16).shape[1] == 40  # never longer
    assert trim_padding(np.zeros((2, 50, 2)), 16).shape[1] == 16  # no frames
    assert trim_padding(frames, 16, width=120).shape == (3, 120, 2)  # fixed width
    assert trim_padding(frames, 16, width=30).shape == (3, 30, 2)


def test_predictions_do_not_depend_on_how_far_clips_are_padded():
    # Networks take clips of any length; each batch is cut after its longest
    # clip, so the padding of the data set changes nothing.
    inputs, y = _frames_problem()
    model = _train(inputs, y)
    assert model.model_.encoder.get_layer("audio_frames").batch_shape[1] is None
    np.testing.assert_allclose(
        model.predict_proba(_padded(inputs, 300)),
        model.predict_proba(inputs),
        atol=1e-5,
    )
    short = {k: v[:8] for k, v in inputs.items()}  # longer than any training clip
    longer = {**short, "audio_frames": np.concatenate([short["audio_frames"]] * 3, 1)}
    assert model.predict_proba(longer).shape == (8, 3)


def test_a_network_built_for_one_length_still_predicts(monkeypatch):
    # Packages trained before networks took any length: their clips are padded
    # or cut to that length, as when they were trained.
    inputs, y = _frames_problem()
    monkeypatch.setattr(fusion, "input_shape", lambda name, m: tuple(m.shape[1:]))
    model = _train(inputs, y)
    monkeypatch.undo()
    assert model.model_.encoder.get_layer("audio_frames").batch_shape[1] == 64
    expected = model.predict_proba(inputs)
    fusion._FORWARD.clear()
    np.testing.assert_allclose(
        model.predict_proba(_padded(inputs, 30)), expected, atol=1e-5
    )
