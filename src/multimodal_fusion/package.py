"""The model package: everything needed to score a new contact, in one folder.

A package holds the chosen model variant (a routed model holds the alignment its
network reads and its floor's unimodal models; packages written before that
hold the alignment beside the model),
the fitted featurizers (:class:`~multimodal_fusion.featurization.FeaturePath`),
the label set, the validation and preparation settings the training data went
through, the parameters it was trained with, a reference profile of the training
data for drift monitoring, and its provenance (environment, a fingerprint of the
training ids, the run's version, its test metrics).

It loads without Kedro and without unpickling anything (see
:mod:`multimodal_fusion.persistence`); every file is checked against the SHA-256
recorded when the package was written, so a changed file is refused::

    from multimodal_fusion.package import ModelPackage

    folder = "data/local/06_models/model_package/<version>/model_package"
    package = ModelPackage.load(folder)
    package.predict(texts=["my card never arrived"], audio=["call.wav"])

The inference pipeline, :meth:`ModelPackage.predict` and the shell predictor all
validate, prepare and featurise a contact through the same functions as the
training pipelines.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multimodal_fusion.alignment import Alignment, align_inputs
from multimodal_fusion.audio import as_stored
from multimodal_fusion.datasets import AudioClip
from multimodal_fusion.evaluation import TOP_K, top_labels
from multimodal_fusion.featurization import FeaturePath
from multimodal_fusion.intake import (
    REJECTED_COLUMNS,
    clean_texts,
    join_contacts,
    prepare_audio,
)
from multimodal_fusion.monitoring import modality_of
from multimodal_fusion.persistence import (
    Stateful,
    UnsafeStateError,
    read_state,
    write_state,
)
from multimodal_fusion.routing import VariantModel

FORMAT = "multimodal-fusion-package/1"
# The modality of each raw source's rejected records.
INPUT_OF_SOURCE = {"raw_texts": "text", "raw_audio": "audio"}
MANIFEST = "manifest.json"
STATE_FOLDER = "state"


class PackageError(ValueError):
    """A model package is missing, of another format, or not as written."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries a package's numbers depend on."""
    names = ("multimodal_fusion", "keras", "tensorflow-cpu", "scikit-learn", "numpy")
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


@dataclass
class ModelPackage:
    """A trained variant with everything it needs to predict.

    Attributes:
        variant: The model variant's name (``gated_fusion``, ...).
        model: The fitted classifier.
        feature_path: The fitted featurizers and the feature widths.
        preprocessing: ``text`` and ``audio``: the ``data_processing``
            parameters every contact is validated and prepared with.
        alignment: The fitted alignment whose common space the model reads,
            in packages whose model does not project its inputs itself.
        reference: The training data's drift profile
            (:func:`multimodal_fusion.monitoring.profile`).
        parameters: The parameters the model was trained with.
        provenance: Environment, data fingerprint, test metrics, versions.
        version: The package's version (its catalog version), set when saved.
        export_format: What runs its networks: ``keras``, or the export
            format given to :meth:`with_export` (not saved).
    """

    variant: str
    model: VariantModel
    feature_path: FeaturePath
    preprocessing: dict[str, Any]
    alignment: Alignment | None = None
    reference: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    version: str | None = None
    export_format: str = "keras"

    @property
    def classes(self) -> list[str]:
        """The labels the model predicts, in probability column order."""
        return [str(c) for c in self.model.classes_]

    @property
    def modalities(self) -> list[str]:
        """The modalities the model reads."""
        return list(self.model.modalities_)

    # --- writing and reading ------------------------------------------------

    def save(self, path: str | os.PathLike, version: str | None = None) -> None:
        """Writes the package into the folder ``path`` (created, must be empty).

        Args:
            path: The package folder.
            version: The package version to record (the catalog's save
                version); the package keeps it.
        """
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        if any(folder.iterdir()):
            raise PackageError(
                f"'{folder}' is not empty: a package needs its own folder"
            )
        self.version = version or self.version
        write_state(
            {
                "model": self.model.get_state(),
                "feature_path": self.feature_path.get_state(),
                "alignment": self.alignment.get_state() if self.alignment else None,
            },
            folder / STATE_FOLDER,
        )
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        manifest = {
            "format": FORMAT,
            "version": self.version,
            "variant": self.variant,
            "classes": self.classes,
            "modalities": self.modalities,
            "preprocessing": self.preprocessing,
            "reference": self.reference,
            "parameters": self.parameters,
            "provenance": self.provenance,
            "files": {p.relative_to(folder).as_posix(): _sha256(p) for p in files},
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        exports: str | os.PathLike | None = None,
        format: str = "keras",
    ) -> ModelPackage:
        """Reads a package folder written by :meth:`save`; with a ``format``
        other than ``keras``, it predicts with that export (see
        :meth:`with_export`; ``exports`` None: the newest export of this
        package version beside it, :func:`multimodal_fusion.exports.find_exports`).

        Raises:
            PackageError: when the folder is not a package of this format, a
                file is missing, added or changed since it was written, or
                holds anything that could run code; or the export is refused.
        """
        package = cls._load(path)
        if format == "keras":
            return package
        if exports is None:
            from multimodal_fusion.exports import find_exports

            exports = find_exports(path, package.version)
        return package.with_export(exports, format)

    def with_export(
        self, exports: str | os.PathLike | Mapping[str, bytes], format: str
    ) -> ModelPackage:
        """A copy of the package whose networks run from an export.

        Args:
            exports: A ``model_exports`` folder (or its files by path).
            format: ``keras`` (the package itself), ``litert_int8``,
                ``litert_float16``, ``onnx_fp32``, ``onnx_int8``, ``pruned_50``,
                ``pruned_80`` (``litert`` / ``onnx``: int8 / fp32).

        Raises:
            PackageError: when the export was made from another package
                version, lacks the format, or a file changed.
        """
        from multimodal_fusion.exports import canonical, load_runtimes, use_runtimes

        format = canonical(format)
        runtimes = (
            None if format == "keras" else load_runtimes(exports, format, self.version)
        )
        return dataclasses.replace(
            self, model=use_runtimes(self.model, runtimes), export_format=format
        )

    @classmethod
    def _load(cls, path: str | os.PathLike) -> ModelPackage:
        folder = Path(path)
        manifest = cls._manifest(folder)
        cls._check_files(folder, manifest["files"])
        try:
            state = read_state(folder / STATE_FOLDER)
        except UnsafeStateError as err:
            raise PackageError(f"Model package '{folder}' is damaged: {err}") from err
        alignment = state["alignment"]
        return cls(
            variant=manifest["variant"],
            model=Stateful.from_state(state["model"]),
            feature_path=Stateful.from_state(state["feature_path"]),
            preprocessing=manifest["preprocessing"],
            alignment=Stateful.from_state(alignment) if alignment else None,
            reference=manifest["reference"],
            parameters=manifest["parameters"],
            provenance=manifest["provenance"],
            version=manifest["version"],
        )

    @staticmethod
    def _manifest(folder: Path) -> dict[str, Any]:
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except FileNotFoundError as err:
            raise PackageError(
                f"'{folder}' is not a model package: it has no {MANIFEST}. Point "
                "at a folder written by the reporting pipeline (model_package)."
            ) from err
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise PackageError(f"'{folder / MANIFEST}' is not JSON ({err})") from err
        if manifest.get("format") != FORMAT:
            raise PackageError(
                f"'{folder}' holds a package of format {manifest.get('format')!r}; "
                f"this version reads {FORMAT!r}"
            )
        return manifest

    @staticmethod
    def _check_files(folder: Path, recorded: dict[str, str]) -> None:
        present = {
            p.relative_to(folder).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and p.name != MANIFEST
        }
        extra, missing = present - set(recorded), set(recorded) - present
        changed = sorted(
            name
            for name in set(recorded) & present
            if _sha256(folder / name) != recorded[name]
        )
        if extra or missing or changed:
            details = "; ".join(
                f"{what}: {', '.join(sorted(names))}"
                for what, names in (
                    ("changed", changed),
                    ("missing", missing),
                    ("not in the manifest", extra),
                )
                if names
            )
            raise PackageError(
                f"Model package '{folder}' is not as it was written ({details}). "
                "It was modified or damaged: use an untouched copy or rebuild it "
                "with the reporting pipeline."
            )

    # --- predicting ------------------------------------------------------------

    def score(
        self,
        contacts: pd.DataFrame,
        clips: dict[str, Callable[[], AudioClip]],
        *,
        n_jobs: int | None = 1,
        engine: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` of prepared contacts.

        Args:
            contacts: ``id``, clean ``text``, ``has_text``, ``has_audio``.
            clips: Prepared clips by id, as stored (see
                :func:`multimodal_fusion.audio.as_stored`).
            n_jobs: Processes computing audio features (None: every core).
            engine: Where they are computed (the ``engine`` parameters; ``None``:
                locally, ``n_jobs`` processes).
        """
        path = dataclasses.replace(
            self.feature_path,
            audio_params={**self.feature_path.audio_params, "n_jobs": n_jobs},
        )
        audio = path.audio_inputs(contacts, clips, engine)
        rows = {
            "inputs": {
                **path.text_inputs(contacts),
                "audio": audio["audio"],
                "audio_frames": audio["audio_frames"],
            },
            "has": {
                "text": contacts["has_text"].to_numpy(bool),
                "audio": audio["present"],
            },
        }
        if self.alignment is not None:
            rows = align_inputs({"rows": rows}, self.alignment)["rows"]
        return self.model.predict_proba(rows["inputs"])

    def predict_contacts(
        self,
        contacts: pd.DataFrame,
        clips: dict[str, Callable[[], AudioClip]],
        *,
        top_k: int = TOP_K,
        n_jobs: int | None = 1,
        engine: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """One prediction row per contact: ``id``, ``predicted``,
        ``probability``, ``label_1..k`` / ``probability_1..k``, ``modalities``
        (what the prediction was made from), ``variant`` and
        ``package_version``."""
        probabilities = (
            self.score(contacts, clips, n_jobs=n_jobs, engine=engine)
            if len(contacts)
            else np.zeros((0, len(self.classes)))
        )
        best = top_labels(probabilities, self.classes, top_k)
        return pd.DataFrame(
            {
                "id": contacts["id"].to_numpy(),
                "predicted": best["label_1"],
                "probability": best["probability_1"],
                **best,
                "modalities": [
                    modality_of(t, a)
                    for t, a in zip(
                        contacts["has_text"], contacts["has_audio"], strict=True
                    )
                ],
                "variant": self.variant,
                "package_version": self.version,
            }
        )

    def prepare(
        self, raw_texts: pd.DataFrame, raw_audio: dict[str, Any]
    ) -> tuple[pd.DataFrame, dict[str, Callable[[], AudioClip]], pd.DataFrame]:
        """Validates, cleans and prepares raw contacts like ``data_processing``.

        Args:
            raw_texts: ``id,text``.
            raw_audio: File name (stem = id) → path, file bytes, clip or
                ``AudioSource``.

        Returns:
            The usable contacts, their prepared clips (as stored), and every
            rejected record and id (``REJECTED_COLUMNS``).
        """
        texts, rejected_texts = clean_texts(raw_texts, self.preprocessing["text"])
        preparers, audio_index, rejected_audio = prepare_audio(
            raw_audio, self.preprocessing["audio"]
        )
        no_labels = pd.DataFrame(columns=["id", "label", "speaker", "split"])
        contacts, rejected = join_contacts(
            texts,
            audio_index,
            no_labels,
            rejected_texts,
            pd.DataFrame(columns=REJECTED_COLUMNS),
            rejected_audio,
            {"min_class_size": 0},
        )
        clips = {cid: _stored(prepare) for cid, prepare in preparers.items()}
        return contacts, clips, rejected

    def predict(
        self,
        texts: Sequence[str | None] | None = None,
        audio: Sequence[Any] | None = None,
        *,
        ids: Sequence[str] | None = None,
        top_k: int = TOP_K,
    ) -> pd.DataFrame:
        """Predicts the label of each contact from its raw text and/or clip.

        Args:
            texts: One typed message per contact (None or "" for none).
            audio: One clip per contact: a file path, the file's bytes, an
                ``AudioClip`` / ``(waveform, sample_rate)``, or None.
            ids: Contact ids (default ``"0"``, ``"1"``, ...).
            top_k: How many labels to list per contact.

        Returns:
            One row per contact, in input order: ``id``, ``status``
            (``predicted`` or ``rejected``), ``reason`` (why it was rejected,
            else ""), ``rejected_inputs`` (each rejected input's reason, e.g.
            ``{"audio": "too_long"}``; empty when none was), and the columns of
            :meth:`predict_contacts`. A contact with one unusable modality is
            predicted from the other; its ``modalities`` say which and its
            ``rejected_inputs`` why.
        """
        n = len(texts if texts is not None else audio if audio is not None else [])
        texts = list(texts) if texts is not None else [None] * n
        audio = list(audio) if audio is not None else [None] * n
        ids = [str(i) for i in (ids if ids is not None else range(n))]
        if not len(texts) == len(audio) == len(ids):
            raise ValueError(
                f"texts, audio and ids must be as long as each other, got "
                f"{len(texts)}, {len(audio)} and {len(ids)}"
            )
        raw_texts = pd.DataFrame(
            [(i, t) for i, t in zip(ids, texts, strict=True) if t is not None],
            columns=["id", "text"],
        )
        raw_audio = {
            f"{i}{_suffix(a)}": _read_if_path(a)
            for i, a in zip(ids, audio, strict=True)
            if a is not None
        }
        contacts, clips, rejected = self.prepare(raw_texts, raw_audio)
        predicted = self.predict_contacts(contacts, clips, top_k=top_k)
        # A contact sent with neither input never reaches the validation.
        verdicts, by_input = _rejections(rejected)
        reasons = {
            **{i: "no_usable_modality" for i in set(ids) - set(predicted["id"])},
            **verdicts,
        }
        rows = predicted.set_index("id").reindex(ids)
        rows["variant"], rows["package_version"] = self.variant, self.version
        rows.insert(
            0, "status", ["rejected" if i in reasons else "predicted" for i in ids]
        )
        rows.insert(1, "reason", [reasons.get(i, "") for i in ids])
        rows.insert(2, "rejected_inputs", [by_input.get(i, {}) for i in ids])
        return rows.reset_index()


def result_of(row: pd.Series) -> dict[str, Any]:
    """One row of :meth:`ModelPackage.predict` as plain JSON-ready values:
    ``status``, ``reason`` (None when predicted), ``rejected_inputs``,
    ``variant``, ``package_version`` and, when predicted, ``label``,
    ``probability``, ``modalities`` and ``top`` (``[{label, probability}]``,
    best first)."""
    result: dict[str, Any] = {
        "status": row["status"],
        "reason": row["reason"] or None,
        "rejected_inputs": dict(row["rejected_inputs"]),
        "variant": row["variant"],
        "package_version": row["package_version"],
    }
    if row["status"] != "predicted":
        return result
    ranks = sorted(
        int(c.removeprefix("label_")) for c in row.index if c[:6] == "label_"
    )
    top = [
        {"label": row[f"label_{k}"], "probability": float(row[f"probability_{k}"])}
        for k in ranks
    ]
    return {
        **result,
        "label": top[0]["label"],
        "probability": top[0]["probability"],
        "modalities": row["modalities"],
        "top": top,
    }


def _rejections(
    rejected: pd.DataFrame,
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The reason of each contact rejected as a whole, and contact id →
    {input: reason} of its rejected text and audio records."""
    verdicts: dict[str, str] = {}
    by_input: dict[str, dict[str, str]] = {}
    for cid, source, reason in zip(
        rejected["id"], rejected["source"], rejected["reason"], strict=True
    ):
        if source == "contact":
            verdicts[cid] = reason
        elif source in INPUT_OF_SOURCE:
            by_input.setdefault(str(cid), {})[INPUT_OF_SOURCE[source]] = reason
    return verdicts, by_input


def _suffix(value: Any) -> str:
    """A file name suffix for a clip's key (its stem is the contact id)."""
    if isinstance(value, str | os.PathLike):
        return Path(value).suffix or ".audio"
    return ".audio"


def _read_if_path(value: Any) -> Any:
    """A path's file bytes (decoded and checked like any clip); anything else
    passes on to ``prepare_audio`` as it is (bytes, clips, tuples)."""
    if isinstance(value, str | os.PathLike):
        path = Path(value)
        if not path.is_file():
            raise FileNotFoundError(f"No audio file at '{path}'")
        return path.read_bytes()
    return value


def _stored(prepare: Callable[[], AudioClip]) -> Callable[[], AudioClip]:
    """A clip preparer whose output is passed through clean_audio's format."""
    return lambda: as_stored(prepare())
