"""Compressed exports (:mod:`multimodal_fusion.exports`): every format predicts,
fp32 exports equal Keras, int8 ones agree on labels, pruning reaches its
sparsity, and an export of another package version or with a changed file is
refused; then one real ``kedro run --pipelines export`` on the toy project."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="the export extra is not installed")

from multimodal_fusion import exports  # noqa: E402
from multimodal_fusion.__main__ import predict_command  # noqa: E402
from multimodal_fusion.exports import (  # noqa: E402
    export_files,
    kernel_sparsity,
    load_runtimes,
    manifest,
    prune,
    use_runtimes,
)
from multimodal_fusion.fusion import (  # noqa: E402
    FusionClassifier,
    LateFusionClassifier,
)
from multimodal_fusion.package import ModelPackage, PackageError  # noqa: E402
from tests.project_copy import latest_version, outputs, run_session  # noqa: E402

VERSION = "2026-12-03T00.00.00.000Z"
SMALL = {
    "branch_units": 16,
    "fusion_units": 16,
    "conv_channels": (8, 8),
    "epochs": 3,
    "batch_size": 32,
    "seed": 0,
}
MEMBER = {k: v for k, v in SMALL.items() if k != "seed"}  # late fusion: its own seed


def _inputs(n: int = 96, seed: int = 0) -> tuple[dict, np.ndarray]:
    """Text and audio rows whose class shows in both; clips of different
    lengths (zero-padded frames), some rows missing a modality."""
    rng = np.random.default_rng(seed)
    k = np.arange(n) % 3
    text = rng.random((n, 24)).astype(np.float32) * (rng.random((n, 24)) < 0.3)
    text[np.arange(n), k] += 1.0
    audio = rng.normal(size=(n, 8)).astype(np.float32)
    audio[:, 0] += 2.0 * k
    frames = rng.normal(size=(n, 40, 6)).astype(np.float32) + k[:, None, None]
    for i, length in enumerate(rng.integers(8, 40, n)):
        frames[i, length:] = 0
    text[::7] = 0  # no text
    audio[3::7], frames[3::7] = 0, 0  # no audio
    inputs = {"text": text, "audio": audio, "audio_frames": frames}
    return inputs, np.array(["a", "b", "c"])[k]


@pytest.fixture(scope="module")
def data():
    return _inputs()


@pytest.fixture(scope="module")
def gated(data):
    inputs, y = data
    return FusionClassifier(modalities=["text", "audio"], fusion="gated", **SMALL).fit(
        inputs, y, validation=(inputs, y)
    )


def _exported(classifier, formats) -> dict[str, bytes]:
    files = {}
    for fmt in formats:
        files.update(export_files(classifier, fmt))
    files[exports.MANIFEST] = json.dumps(manifest(files, VERSION, "toy")).encode()
    return files


@pytest.fixture(scope="module")
def gated_exports(gated):
    return _exported(gated, ["litert_int8", "litert_float16", "onnx_fp32", "onnx_int8"])


def _predict(classifier, files, fmt, inputs):
    runtimes = load_runtimes(files, fmt, VERSION)
    return use_runtimes(classifier, runtimes).predict_proba(inputs)


def test_every_format_predicts_fp32_equals_keras_and_int8_agrees(
    gated, gated_exports, data
):
    inputs, _ = data
    keras = gated.predict_proba(inputs)
    for fmt in ("litert_int8", "litert_float16", "onnx_fp32", "onnx_int8"):
        proba = _predict(gated, gated_exports, fmt, inputs)
        assert proba.shape == keras.shape
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-3)
        agreement = np.mean(proba.argmax(1) == keras.argmax(1))
        assert agreement >= 0.95, fmt
    np.testing.assert_allclose(
        _predict(gated, gated_exports, "onnx_fp32", inputs), keras, atol=1e-4
    )
    # The exports take batches of any size and clips of any length, like Keras.
    one = {k: v[5:6, :12] if v.ndim == 3 else v[5:6] for k, v in inputs.items()}
    for fmt in ("litert_float16", "onnx_fp32"):
        np.testing.assert_allclose(
            _predict(gated, gated_exports, fmt, one),
            gated.predict_proba(one),
            atol=1e-3,
        )
    # The classifier itself still runs its Keras model.
    assert gated._runtime is None


def test_a_late_fusion_exports_one_network_per_member(data):
    inputs, y = data
    late = LateFusionClassifier(
        modalities=["text", "audio"],
        members={**MEMBER, "audio_frames": False},
        seed=0,
    ).fit(inputs, y, validation=(inputs, y))
    files = _exported(late, ["litert_int8", "onnx_fp32"])
    assert {"litert_int8/text.tflite", "onnx_fp32/audio.onnx"} <= set(files)
    keras = late.predict_proba(inputs)
    np.testing.assert_allclose(
        _predict(late, files, "onnx_fp32", inputs), keras, atol=1e-4
    )
    litert = _predict(late, files, "litert", inputs)  # litert: int8
    assert np.mean(litert.argmax(1) == keras.argmax(1)) >= 0.95


def test_pruning_reaches_its_sparsity_and_keeps_predicting(gated, data):
    inputs, y = data
    before = gated.predict_proba(inputs)
    pruned = prune(gated, inputs, y, sparsity=0.8, epochs=1)
    assert kernel_sparsity(pruned.model_) == pytest.approx(0.8, abs=0.01)
    assert kernel_sparsity(gated.model_) < 0.01  # the original is untouched
    np.testing.assert_array_equal(gated.predict_proba(inputs), before)
    again = prune(gated, inputs, y, sparsity=0.8, epochs=1)  # same seed, same weights
    for first, second in zip(
        pruned.model_.get_weights(), again.model_.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(first, second)
    files = export_files(pruned, "pruned_80")
    files[exports.MANIFEST] = json.dumps(manifest(files, VERSION, "toy")).encode()
    proba = _predict(gated, files, "pruned_80", inputs)
    np.testing.assert_allclose(proba, pruned.predict_proba(inputs), atol=1e-5)
    entry = json.loads(files[exports.MANIFEST])["exports"]["pruned_80"]
    assert entry["gzip_bytes"] < entry["size_bytes"]


def test_an_export_of_another_version_or_with_a_changed_file_is_refused(
    gated_exports, tmp_path
):
    for name, data in gated_exports.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    assert set(load_runtimes(tmp_path, "onnx", VERSION)) == {"model"}
    with pytest.raises(PackageError, match="made from package version"):
        load_runtimes(tmp_path, "onnx_fp32", "another-version")
    with pytest.raises(PackageError, match="holds no pruned_50"):
        load_runtimes(tmp_path, "pruned_50", VERSION)
    with pytest.raises(PackageError, match="Unknown export format"):
        load_runtimes(tmp_path, "tensorrt", VERSION)
    changed = tmp_path / "onnx_fp32/model.onnx"
    changed.write_bytes(changed.read_bytes()[:-1] + b"\0")
    with pytest.raises(PackageError, match="SHA-256 differs"):
        load_runtimes(tmp_path, "onnx_fp32", VERSION)
    (tmp_path / "litert_int8/model.tflite").unlink()
    with pytest.raises(PackageError, match="is missing"):
        load_runtimes(tmp_path, "litert_int8", VERSION)


# --- the export pipeline on the toy project ------------------------------------

QUICK_EXPORT = {
    "export": {
        "formats": ["keras", "litert_int8", "onnx_fp32"],
        "sparsities": [0.5],
        "fine_tune_epochs": 1,
        "latency_contacts": 5,
    }
}


@pytest.fixture(scope="module")
def exported(toy_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained toy project after ``kedro run --pipelines export``."""
    project = tmp_path_factory.mktemp("exported") / "project"
    shutil.copytree(toy_project, project)
    run_session(project, pipeline_name="export", runtime_params=QUICK_EXPORT)
    return project


@pytest.mark.slow
def test_the_export_pipeline_measures_every_format_and_serves_them(exported, capsys):
    data = exported / outputs()
    metrics = json.loads(
        (latest_version(data / "08_reporting/export_metrics.json")).read_text()
    )
    rows = {row["format"]: row for row in metrics["formats"]}
    assert list(rows) == ["keras", "litert_int8", "onnx_fp32", "pruned_50"]
    assert rows["onnx_fp32"]["agreement"] == 1.0
    assert rows["keras"]["accuracy"] == rows["onnx_fp32"]["accuracy"]
    assert rows["pruned_50"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    for row in rows.values():
        assert row["size_bytes"] > 0 and row["p50_ms"] > 0
    report = latest_version(data / "08_reporting/export_report.html").read_text()
    assert "litert_int8" in report and "pruned_50" in report

    folder = latest_version(data / "06_models/model_package")
    keras = ModelPackage.load(folder)
    litert = ModelPackage.load(folder, format="litert")  # the newest export
    assert litert.export_format == "litert_int8"
    clip = exported / "data/01_raw/audio/t0003.wav"
    texts, audio = ["my parcel courier late issue", None], [clip, clip]
    expected = keras.predict(texts=texts, audio=audio)
    served = litert.predict(texts=texts, audio=audio)
    assert list(served["predicted"]) == list(expected["predicted"])
    onnx = keras.with_export(latest_version(data / "06_models/model_exports"), "onnx")
    np.testing.assert_allclose(
        onnx.predict(texts=texts, audio=audio)["probability"],
        expected["probability"],
        atol=1e-4,
    )
    # The shell predictor takes the same formats; a wrong one exits with 2.
    args = ["--package", str(folder), "--text", texts[0], "--json"]
    capsys.readouterr()  # what the run printed before
    assert predict_command([*args, "--format", "onnx"]) == 0
    out = capsys.readouterr().out  # the session's log handlers also print here
    assert json.loads(out[out.index("{\n") :])["label"] == expected["predicted"][0]
    assert predict_command([*args, "--format", "tensorrt"]) == 2
    assert "Unknown export format" in capsys.readouterr().err


@pytest.mark.slow
def test_the_service_serves_an_export_as_the_package_predicts_with_it(
    exported, tmp_path
):
    from tests.test_serving import TOKEN, _predict, _start, _stop, _wait_ready

    folder = latest_version(exported / outputs() / "06_models/model_package")
    server = _start(folder, tmp_path / "serve.log", TOKEN, "--format", "litert")
    try:
        _wait_ready(server)
        clip = (exported / "data/01_raw/audio/t0003.wav").read_bytes()
        reply = _predict(server, text="my parcel courier late issue", audio=clip)
    finally:
        _stop(server)
    assert reply.status == 200, reply.body
    direct = ModelPackage.load(folder, format="litert").predict(
        texts=["my parcel courier late issue"], audio=[clip]
    )
    assert reply.json()["label"] == direct["predicted"][0]
    assert reply.json()["probability"] == pytest.approx(direct["probability"][0])
