"""Using a trained model: the model package, the inference pipeline and the shell
predictor, on a copy of the toy project trained by ``toy_project``.

The package must reproduce the pipeline's test probabilities in a fresh process,
score a batch of new contacts through the same validation as training, account
for every incoming id, and refuse a package that was tampered with.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multimodal_fusion.evaluation import top_labels
from multimodal_fusion.fusion import blank_modality
from multimodal_fusion.package import MANIFEST, ModelPackage, PackageError
from multimodal_fusion.persistence import ARRAYS_FILE, STATE_FILE
from tests.project_copy import latest_version, outputs, run_session
from tests.test_persistence import Marker
from tests.toy_data import write_toy_dataset

OUTPUTS = outputs()
BATCH = 40
LABEL_ONLY = "x_label_only"


def _latest(project: Path, filepath: str) -> Path:
    return latest_version(project / OUTPUTS / filepath)


def _package_folder(project: Path) -> Path:
    return _latest(project, "06_models/model_package")


@pytest.fixture(scope="module")
def scored(toy_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained toy project that scored a labelled batch of new
    contacts: one with an empty message, one with a corrupt clip, one id with a
    label only."""
    project = tmp_path_factory.mktemp("scored") / "project"
    shutil.copytree(toy_project, project)
    incoming = project / "data/01_raw/incoming"
    paths = write_toy_dataset(incoming, n=BATCH, seed=5)
    texts = pd.read_csv(paths["texts"], dtype=str)
    texts.loc[texts["id"] == "t0000", "text"] = ""
    texts.to_csv(paths["texts"], index=False)
    clip = paths["audio"] / "t0001.wav"
    clip.write_bytes(clip.read_bytes()[:200])  # cut short in its header's data
    labels = pd.read_csv(paths["labels"], dtype=str)
    labels.loc[len(labels)] = [LABEL_ONLY, "refund", "s0"]
    labels.to_csv(paths["labels"], index=False)
    run_session(project, pipeline_name="inference")
    return project


def _predictions(project: Path) -> pd.DataFrame:
    return pd.read_csv(
        _latest(project, "07_model_output/predictions.csv"),
        dtype={"id": str, "label": str, "predicted": str},
        keep_default_na=False,
    )


def _rejected(project: Path) -> pd.DataFrame:
    return pd.read_csv(
        _latest(project, "07_model_output/incoming_rejected.csv"),
        dtype=str,
        keep_default_na=False,
    )


def test_every_incoming_id_is_predicted_or_rejected_with_a_reason(scored):
    predictions, rejected = _predictions(scored), _rejected(scored)
    verdicts = rejected[rejected["source"] == "contact"]
    raw = {f"t{i:04d}" for i in range(BATCH)} | {LABEL_ONLY}

    assert set(predictions["id"]) | set(verdicts["id"]) == raw
    assert not set(predictions["id"]) & set(verdicts["id"])
    assert verdicts.set_index("id")["reason"].to_dict() == {
        LABEL_ONLY: "no_usable_modality"
    }
    scores = json.loads(_latest(scored, "08_reporting/batch_scores.json").read_text())
    assert scores["raw_ids"] == len(raw) == scores["predicted"] + scores["rejected"]


def test_a_contact_with_one_unusable_modality_is_predicted_from_the_other(scored):
    by_id = _predictions(scored).set_index("id")
    rejected = _rejected(scored)
    clip = rejected[(rejected["id"] == "t0001") & (rejected["source"] == "raw_audio")]

    assert by_id.loc["t0000", "modalities"] == "audio"  # empty message
    assert by_id.loc["t0001", "modalities"] == "text"  # corrupt clip
    # Cut inside its first samples: what is left is too short or truncated.
    assert clip["reason"].tolist() in (["too_short"], ["truncated"])
    assert (by_id.drop(["t0000", "t0001"])["modalities"] == "text+audio").all()


def test_a_labelled_batch_is_scored(scored):
    predictions = _predictions(scored)
    scores = json.loads(_latest(scored, "08_reporting/batch_scores.json").read_text())
    accuracy = float((predictions["label"] == predictions["predicted"]).mean())

    assert scores["labelled"] == BATCH
    assert scores["accuracy"] == pytest.approx(accuracy)
    assert scores["accuracy"] > 0.8  # the toy classes are easy
    summary = _latest(scored, "08_reporting/drift_summary.md").read_text()
    assert f"On the {BATCH} labelled contacts: accuracy {accuracy:.3f}" in summary


def test_the_package_predicts_contacts_with_one_modality_or_none(toy_project):
    package = ModelPackage.load(_package_folder(toy_project))
    clip = toy_project / "data/01_raw/audio/t0003.wav"
    voice = package.predict(audio=[clip, clip.read_bytes()], ids=["path", "bytes"])
    typed = package.predict(texts=["my card is lost", ""])

    assert voice["modalities"].tolist() == ["audio", "audio"]
    assert voice["probability"].iloc[0] == pytest.approx(
        voice["probability"].iloc[1], abs=1e-6
    )
    assert typed["status"].tolist() == ["predicted", "rejected"]
    assert typed["reason"].tolist() == ["", "no_usable_modality"]
    assert typed["modalities"].iloc[0] == "text"


def test_the_batch_is_predicted_as_the_package_predicts_it(scored):
    raw = scored / "data/01_raw/incoming"
    texts = pd.read_csv(raw / "texts.csv", dtype=str, keep_default_na=False)
    ids = texts["id"].tolist()
    package = ModelPackage.load(_package_folder(scored))
    direct = package.predict(
        texts=texts["text"].tolist(),
        audio=[raw / "audio" / f"{i}.wav" for i in ids],
        ids=ids,
    ).set_index("id")
    pipeline = _predictions(scored).set_index("id").loc[ids]

    assert (direct["status"] == "predicted").all()
    assert direct["predicted"].tolist() == pipeline["predicted"].tolist()
    assert direct["modalities"].tolist() == pipeline["modalities"].tolist()
    np.testing.assert_allclose(
        direct["probability"].to_numpy(float), pipeline["probability"], atol=1e-9
    )


def test_drift_is_reported_for_every_signal(scored):
    report = json.loads(_latest(scored, "08_reporting/drift_report.json").read_text())
    plot = json.loads((_latest(scored, "08_reporting/plots/drift.json")).read_text())

    assert set(report["signals"]) == {
        "modalities",
        "text_length",
        "oov_share",
        "clip_duration_s",
        "loudness_dbfs",
        "snr_db",
        "predicted_label",
        "confidence",
    }
    for entry in report["signals"].values():
        assert entry["psi"] is not None and entry["psi"] >= 0
        assert entry["flagged"] == (entry["psi"] > report["psi_threshold"])
    assert plot["data"][0]["x"] == list(report["signals"])


# --- the package in a fresh process ----------------------------------------------

FRESH_PROCESS = """
import json, sys
import pandas as pd
from multimodal_fusion.package import ModelPackage
folder, raw, ids, no_text = sys.argv[1], sys.argv[2], *map(json.loads, sys.argv[3:])
texts = pd.read_csv(f"{raw}/texts.csv", dtype=str, keep_default_na=False)
texts = texts.set_index("id")["text"]
package = ModelPackage.load(folder)
rows = package.predict(
    texts=[None if i in no_text else texts[i] for i in ids],
    audio=[f"{raw}/audio/{i}.wav" for i in ids],
    ids=ids,
)
session = "kedro.framework.session" in sys.modules
print(json.dumps({"session": session, "rows": rows.to_dict("list")}))
"""


def test_the_package_reproduces_the_test_probabilities_in_a_fresh_process(
    toy_project, tmp_path
):
    """Every other test contact is sent without its message: those rows must
    match the pipeline's model on the same rows with the text blanked."""
    folder = _package_folder(toy_project)
    variant = json.loads((folder / MANIFEST).read_text())["variant"]
    model = pickle.loads(
        _latest(toy_project, f"06_models/{variant}/model.pkl").read_bytes()
    )
    test = pickle.loads(
        (toy_project / OUTPUTS / "05_model_input/model_inputs.pkl").read_bytes()
    )["test"]
    ids = [str(i) for i in test["ids"]]
    no_text = np.arange(len(ids)) % 2 == 1
    expected = model.predict_proba(blank_modality(test["inputs"], "text", no_text))
    written = pd.read_csv(
        toy_project / OUTPUTS / f"07_model_output/{variant}/test_predictions.csv",
        dtype={"id": str, "label": str, "predicted": str},
    )
    script = tmp_path / "predict.py"
    script.write_text(FRESH_PROCESS)
    done = subprocess.run(
        [
            sys.executable,
            script,
            folder,
            toy_project / "data/01_raw",
            json.dumps(ids),
            json.dumps([i for i, drop in zip(ids, no_text, strict=True) if drop]),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        cwd=tmp_path,  # outside any Kedro project
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rows = pd.DataFrame(result["rows"])

    assert not result["session"]  # no Kedro project or session involved
    assert rows["id"].tolist() == ids
    assert rows["modalities"].tolist() == [
        "audio" if drop else "text+audio" for drop in no_text
    ]
    best = top_labels(expected, [str(c) for c in model.classes_], 3)
    for k in (1, 2, 3):
        assert rows[f"label_{k}"].tolist() == best[f"label_{k}"]
        np.testing.assert_allclose(
            rows[f"probability_{k}"], best[f"probability_{k}"], rtol=0, atol=1e-6
        )
    # The rows with both modalities are the pipeline's own test predictions.
    both = ~no_text
    np.testing.assert_allclose(
        rows.loc[both, "probability_1"],
        written.loc[both, "probability_1"],
        rtol=0,
        atol=1e-6,
    )


# --- a package that was tampered with ---------------------------------------------


@pytest.fixture
def package_copy(toy_project, tmp_path) -> Path:
    folder = tmp_path / "package"
    shutil.copytree(_package_folder(toy_project), folder)
    return folder


def _rewrite_manifest_hash(folder: Path, name: str) -> None:
    """What an attacker who also edits the manifest would do."""
    from multimodal_fusion.package import _sha256

    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][name] = _sha256(folder / name)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_an_untouched_copy_loads(package_copy):
    package = ModelPackage.load(package_copy)
    assert package.version and package.classes


def test_a_changed_file_is_refused(package_copy):
    state = package_copy / "state" / STATE_FILE
    state.write_text(state.read_text().replace("relu", "gelu", 1) + " ")
    with pytest.raises(PackageError, match=r"changed: state/state\.json"):
        ModelPackage.load(package_copy)


def test_an_added_or_missing_file_is_refused(package_copy):
    (package_copy / "state" / "extra.py").write_text("print('hi')")
    with pytest.raises(PackageError, match=r"not in the manifest: state/extra\.py"):
        ModelPackage.load(package_copy)
    (package_copy / "state" / "extra.py").unlink()
    (package_copy / "state" / ARRAYS_FILE).unlink()
    with pytest.raises(PackageError, match=r"missing: state/arrays\.npz"):
        ModelPackage.load(package_copy)


def test_a_pickle_that_would_run_code_is_refused_unexecuted(package_copy, tmp_path):
    marker = tmp_path / "pwned"
    name = f"state/{ARRAYS_FILE}"
    (package_copy / name).write_bytes(pickle.dumps(Marker(marker)))
    _rewrite_manifest_hash(package_copy, name)

    with pytest.raises(PackageError, match="is damaged: .*not a NumPy archive"):
        ModelPackage.load(package_copy)
    assert not marker.exists()


def test_a_network_swapped_for_a_pickle_is_refused_unexecuted(package_copy, tmp_path):
    marker = tmp_path / "pwned"
    name = "state/keras/0.keras"
    (package_copy / name).write_bytes(pickle.dumps(Marker(marker)))
    _rewrite_manifest_hash(package_copy, name)

    with pytest.raises(PackageError, match="not a Keras model that loads in safe mode"):
        ModelPackage.load(package_copy)
    assert not marker.exists()


def test_a_folder_that_is_not_a_package_is_refused(tmp_path):
    with pytest.raises(PackageError, match="is not a model package"):
        ModelPackage.load(tmp_path)


# --- the shell predictor ------------------------------------------------------


def test_the_shell_predictor_prints_the_top_labels(toy_project):
    folder = _package_folder(toy_project)
    clip = toy_project / "data/01_raw/audio/t0002.wav"
    command = [sys.executable, "-m", "multimodal_fusion", "predict", "--package"]
    done = subprocess.run(
        [*command, folder, "--text", "my parcel is late", "--audio", clip, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "predicted"
    assert result["modalities"] == "text+audio"
    assert len(result["top"]) == 3
    assert sum(entry["probability"] for entry in result["top"]) <= 1 + 1e-6
    package = ModelPackage.load(folder)
    direct = package.predict(texts=["my parcel is late"], audio=[clip]).iloc[0]
    assert result["top"][0]["label"] == direct["predicted"]
    assert result["top"][0]["probability"] == pytest.approx(direct["probability"])

    missing = subprocess.run(
        [*command, folder, "--audio", toy_project / "nothing.wav"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert missing.returncode == 2
    assert "No audio file at" in missing.stderr
