"""Compressed exports of a packaged model: LiteRT (dynamic-range int8, float16),
ONNX (fp32, dynamic int8) and magnitude-pruned Keras networks, with a manifest.

An export is a folder (the ``model_exports`` catalog entry, versioned)::

    manifest.json                 package version, variant, every file's SHA-256
    litert_int8/model.tflite      one file per network: ``model`` for a fusion
    onnx_fp32/model.onnx          classifier, ``text`` / ``audio`` for the
    pruned_50/model.keras         members of a late fusion
    ...

:meth:`multimodal_fusion.package.ModelPackage.with_export` predicts with one of
them; :func:`load_runtimes` refuses an export made from another package version
or whose file changed. The alignment of an aligned variant stays as it is
(scikit-learn / NumPy): only the networks are exported.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import pickle
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from multimodal_fusion.fusion import (
    Classifier,
    FusionClassifier,
    LateFusionClassifier,
    fit_batches,
    set_global_seed,
)
from multimodal_fusion.package import PackageError
from multimodal_fusion.persistence import read_keras
from multimodal_fusion.routing import RoutedClassifier
from multimodal_fusion.runtimes import KerasRuntime, LiteRTRuntime, OnnxRuntime

EXPORTS_FORMAT = "multimodal-fusion-exports/1"
MANIFEST = "manifest.json"
# The formats an export can hold; ``keras`` is the package's own network.
FORMATS = (
    "keras",
    "litert_int8",
    "litert_float16",
    "onnx_fp32",
    "onnx_int8",
    "pruned_50",
    "pruned_80",
)
# Short names the command line accepts.
ALIASES = {"litert": "litert_int8", "onnx": "onnx_fp32"}
SUFFIXES = {"litert": ".tflite", "onnx": ".onnx", "pruned": ".keras"}
# The network of a fusion classifier (late fusion: one per member modality).
MODEL = "model"


def canonical(name: str) -> str:
    """A format's full name (``litert`` → ``litert_int8``, ``onnx`` →
    ``onnx_fp32``); any ``pruned_<percent>`` is accepted.

    Raises:
        PackageError: for an unknown format.
    """
    name = ALIASES.get(name, name)
    if name in FORMATS or (name.startswith("pruned_") and name[7:].isdigit()):
        return name
    raise PackageError(
        f"Unknown export format {name!r}: use one of {', '.join(FORMATS)} "
        f"(or {', '.join(ALIASES)})"
    )


def pruned_format(sparsity: float) -> str:
    """The format name of a sparsity (0.5 → ``pruned_50``)."""
    return f"pruned_{round(100 * sparsity)}"


def family(fmt: str) -> str:
    """``litert``, ``onnx``, ``pruned`` or ``keras``."""
    return fmt.split("_", maxsplit=1)[0]


def networks(classifier: Classifier) -> dict[str, FusionClassifier]:
    """The classifier's networks by name: ``model``, or each late-fusion
    member's modality; a routed model's fused networks and, as
    ``<modality>_only``, the unimodal models some rows are routed to."""
    if isinstance(classifier, RoutedClassifier):
        return {
            **networks(classifier.fused_),
            **{f"{m}_only": c for m, c in classifier.fallbacks_.items()},
        }
    if isinstance(classifier, LateFusionClassifier):
        return dict(classifier.members_)
    return {MODEL: classifier}


# --- exporting ----------------------------------------------------------------


def input_signature(network: FusionClassifier) -> dict[str, Any]:
    """The ``tf.TensorSpec`` of each network input (dense; floats as float32,
    as Keras feeds them; batch and frame length left open unless the network
    was built for one length)."""
    import tensorflow as tf

    functional = getattr(network.model_, "encoder", network.model_)
    return {
        t.name: tf.TensorSpec(
            t.shape,
            tf.float32 if tf.as_dtype(t.dtype).is_floating else t.dtype,
            name=t.name,
        )
        for t in functional.inputs
    }


def keras_bytes(model) -> bytes:
    """A Keras model as the bytes of its ``.keras`` file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        return path.read_bytes()


def export_network(network: FusionClassifier, fmt: str) -> bytes:
    """One network in a LiteRT or ONNX format, as the file's bytes.

    LiteRT: Keras' ``export`` with TFLite builtins only (no Flex ops, which
    ai-edge-litert's interpreter lacks) and dynamic-range quantisation
    (``litert_int8``) or float16 weights (``litert_float16``). ONNX: Keras'
    ``export`` (tf2onnx), then ``onnxruntime.quantization.quantize_dynamic``
    for ``onnx_int8``.
    """
    import tensorflow as tf

    signature = [input_signature(network)]
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        # The signature's dict comes back sorted; inputs are matched by name.
        warnings.filterwarnings("ignore", "The structure of `inputs`")
        warnings.filterwarnings("ignore", category=FutureWarning)
        if family(fmt) == "litert":
            path = f"{folder}/model.tflite"
            target = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
            if fmt == "litert_float16":
                target["supported_types"] = [tf.float16]
            network.model_.export(
                path,
                format="litert",
                input_signature=signature,
                verbose=False,
                optimizations=[tf.lite.Optimize.DEFAULT],
                target_spec=target,
            )
        elif family(fmt) == "onnx":
            path = f"{folder}/model.onnx"
            network.model_.export(
                path, format="onnx", input_signature=signature, verbose=False
            )
            if fmt == "onnx_int8":
                from onnxruntime.quantization import QuantType, quantize_dynamic

                # Its advice to pre-process the graph first is logged on the
                # root logger (six console lines); dynamic int8 of this graph
                # agrees with fp32 on 99.7 % of the demo's labels without it.
                with _without_log_records("Please consider to run pre-processing"):
                    quantize_dynamic(
                        path, f"{folder}/int8.onnx", weight_type=QuantType.QInt8
                    )
                path = f"{folder}/int8.onnx"
        else:
            raise PackageError(f"{fmt!r} is not a LiteRT or ONNX format")
        return Path(path).read_bytes()


@contextlib.contextmanager
def _without_log_records(prefix: str) -> Iterator[None]:
    """Drops the root logger's records whose message starts with ``prefix``."""

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(prefix)

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def export_files(classifier: Classifier, fmt: str) -> dict[str, bytes]:
    """The files of one format (``<format>/<network>.<suffix>`` → bytes): the
    classifier's networks exported to a LiteRT or ONNX format, or, for
    ``pruned_*`` (give the pruned classifier), saved as ``.keras``."""

    def write(network: FusionClassifier) -> bytes:
        if family(fmt) == "pruned":
            return keras_bytes(network.model_)
        return export_network(network, fmt)

    suffix = SUFFIXES[family(fmt)]
    return {
        f"{fmt}/{name}{suffix}": write(network)
        for name, network in networks(classifier).items()
    }


def file_sizes(files: list[bytes]) -> dict[str, int]:
    """Total size and gzip size of some files' bytes."""
    return {
        "size_bytes": sum(map(len, files)),
        "gzip_bytes": sum(len(gzip.compress(f, mtime=0)) for f in files),
    }


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(
    files: Mapping[str, bytes],
    package_version: str | None,
    variant: str,
    sparsity: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The manifest of an export folder: per format its files (network →
    file, SHA-256, size, gzip size), their total size and gzip size, the
    measured kernel sparsity of pruned formats; and the package version and
    variant they came from."""
    from multimodal_fusion.package import library_versions

    formats: dict[str, Any] = {}
    for path, data in sorted(files.items()):
        fmt, name = path.split("/", 1)
        entry = formats.setdefault(fmt, {"files": {}})
        entry["files"][Path(name).stem] = {
            "file": path,
            "sha256": sha256(data),
            **file_sizes([data]),
        }
    for fmt, entry in formats.items():
        for key in ("size_bytes", "gzip_bytes"):
            entry[key] = sum(f[key] for f in entry["files"].values())
        if fmt in (sparsity or {}):
            entry["sparsity"] = sparsity[fmt]
    return {
        "format": EXPORTS_FORMAT,
        "package_version": package_version,
        "variant": variant,
        "exports": formats,
        "libraries": library_versions(),
    }


# --- pruning ------------------------------------------------------------------


def kernels(model) -> list:
    """The kernel weights of a Keras model (dense, convolution, attention
    projections): what magnitude pruning zeroes."""
    return [w for w in model.trainable_weights if w.path.endswith("kernel")]


def magnitude_mask(values: np.ndarray, sparsity: float) -> np.ndarray:
    """1.0 for the weights kept, 0.0 for the ``sparsity`` share of the
    smallest magnitudes."""
    n_zero = int(round(sparsity * values.size))
    if n_zero == 0:
        return np.ones_like(values)
    threshold = np.partition(np.abs(values).ravel(), n_zero - 1)[n_zero - 1]
    return (np.abs(values) > threshold).astype(values.dtype)


def kernel_sparsity(model) -> float:
    """The share of kernel weights that are exactly zero."""
    weights = [np.asarray(w.numpy()) for w in kernels(model)]
    total = sum(w.size for w in weights)
    return float(sum(int((w == 0).sum()) for w in weights) / max(total, 1))


def magnitude_pruning(sparsity: float):
    """A Keras callback that zeroes the ``sparsity`` share of smallest-magnitude
    weights of every kernel when training begins and keeps them zero after
    every batch (tensorflow-model-optimization does not support Keras 3)."""
    import keras

    class MagnitudePruning(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.masks = [
                (w, magnitude_mask(np.asarray(w.numpy()), sparsity))
                for w in kernels(self.model)
            ]
            self.apply()

        def apply(self):
            for weight, mask in self.masks:
                weight.assign(weight * mask)

        def on_train_batch_end(self, batch, logs=None):
            self.apply()

    return MagnitudePruning()


def prune(
    classifier: Classifier,
    inputs: dict[str, Any],
    y,
    sparsity: float,
    epochs: int,
) -> Classifier:
    """A copy of ``classifier`` whose kernels are pruned to ``sparsity``
    (per kernel, smallest magnitudes first) and fine-tuned ``epochs`` epochs
    on ``inputs``/``y`` with the pruned weights held at zero (Adam at the
    network's learning rate, as it was trained)."""
    import keras

    # Seeded before the copy: its layers draw their random seeds (dropout) when
    # they are rebuilt, so the fine-tuning gives the same weights every run.
    set_global_seed(next(iter(networks(classifier).values())).seed)
    pruned = pickle.loads(pickle.dumps(classifier))  # the networks copied
    for network in networks(pruned).values():
        callback = magnitude_pruning(sparsity)
        callback.set_model(network.model_)
        if epochs < 1:
            callback.on_train_begin()
            continue
        # A package's networks are loaded without their training state.
        network.model_.compile(
            optimizer=keras.optimizers.Adam(network.learning_rate),
            loss="sparse_categorical_crossentropy",
        )
        network.model_.fit(
            fit_batches(
                network._select(inputs),
                network._encode(y),
                network.batch_size,
                network.seed,
                network._stride(),
            ),
            epochs=epochs,
            callbacks=[callback],
            shuffle=False,
            verbose=0,
        )
    # The weights, in copies without the fine-tuning optimiser's state (which
    # the .keras file would hold: three times the network's size).
    clean = pickle.loads(pickle.dumps(classifier))
    for name, network in networks(clean).items():
        network.model_.set_weights(networks(pruned)[name].model_.get_weights())
    return clean


# --- loading ------------------------------------------------------------------


class FolderFiles(Mapping):
    """The files of an export folder by relative path, read when asked for."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def __getitem__(self, name: str) -> bytes:
        path = self.folder / name
        if not path.is_file():
            raise KeyError(name)
        return path.read_bytes()

    def __iter__(self) -> Iterator[str]:
        return (
            p.relative_to(self.folder).as_posix()
            for p in sorted(self.folder.rglob("*"))
            if p.is_file()
        )

    def __len__(self) -> int:
        return sum(1 for _ in self)


def read_manifest(files: Mapping[str, bytes]) -> dict[str, Any]:
    """The manifest of an export.

    Raises:
        PackageError: when there is none or it is of another format.
    """
    try:
        found = json.loads(files[MANIFEST])
    except KeyError as err:
        where = getattr(files, "folder", "these files")
        raise PackageError(
            f"'{where}' is not a model export: it has no {MANIFEST} (give a "
            "model_exports/<version>/model_exports folder)"
        ) from err
    if found.get("format") != EXPORTS_FORMAT:
        raise PackageError(
            f"A model export of format {found.get('format')!r}; this version reads "
            f"{EXPORTS_FORMAT!r}"
        )
    return found


def load_runtimes(
    files: Mapping[str, bytes] | str | os.PathLike,
    fmt: str,
    package_version: str | None,
) -> dict[str, Any]:
    """The runtime of each network of one format of an export.

    Args:
        files: The export folder, or its files by relative path.
        fmt: The format (:func:`canonical` names).
        package_version: The version of the package the runtimes are for.

    Raises:
        PackageError: when the export was made from another package version,
            does not hold the format, or a file is missing or changed.
    """
    if not isinstance(files, Mapping):
        files = FolderFiles(files)
    fmt = canonical(fmt)
    found = read_manifest(files)
    if found["package_version"] != package_version:
        raise PackageError(
            f"This export was made from package version {found['package_version']}, "
            f"not {package_version}: export this package (kedro run --pipelines "
            "export) or point at its exports"
        )
    if fmt not in found["exports"]:
        raise PackageError(
            f"This export holds no {fmt}: it holds {', '.join(found['exports'])}"
        )
    runtimes = {}
    for name, entry in found["exports"][fmt]["files"].items():
        try:
            data = files[entry["file"]]
        except KeyError as err:
            raise PackageError(f"Export file {entry['file']} is missing") from err
        if sha256(data) != entry["sha256"]:
            raise PackageError(
                f"Export file {entry['file']} is not as it was written (SHA-256 "
                "differs): it was modified or damaged; export the package again"
            )
        runtimes[name] = runtime_of(data, fmt)
    return runtimes


def runtime_of(data: bytes, fmt: str):
    """The runtime of one exported network file."""
    if family(fmt) == "litert":
        return LiteRTRuntime(data, fmt)
    if family(fmt) == "onnx":
        return OnnxRuntime(data, fmt)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        path.write_bytes(data)
        return KerasRuntime(read_keras(path), fmt)


def _replaced(obj: Any, **changes: Any) -> Any:
    """A shallow copy of ``obj`` with some attributes changed; ``copy.copy``
    would go through the classifiers' ``__getstate__``, which pickles their
    Keras models."""
    clone = object.__new__(type(obj))
    clone.__dict__.update(obj.__dict__, **changes)
    return clone


def use_runtimes(
    classifier: Classifier, runtimes: Mapping[str, Any] | None
) -> Classifier:
    """A copy of ``classifier`` whose networks predict with ``runtimes``
    (network name → runtime, see :func:`networks`; None: their Keras models)."""
    runtimes = runtimes or {}
    if isinstance(classifier, RoutedClassifier):
        fallbacks = {
            m: _replaced(c, _runtime=runtimes.get(f"{m}_only"))
            for m, c in classifier.fallbacks_.items()
        }
        return _replaced(
            classifier,
            fused_=use_runtimes(classifier.fused_, runtimes),
            fallbacks_=fallbacks,
        )
    if isinstance(classifier, LateFusionClassifier):
        members = {
            m: _replaced(member, _runtime=runtimes.get(m))
            for m, member in classifier.members_.items()
        }
        return _replaced(classifier, members_=members)
    return _replaced(classifier, _runtime=runtimes.get(MODEL))


def find_exports(package_folder: str | os.PathLike, version: str | None) -> Path:
    """The newest ``model_exports`` version beside a package
    (``.../06_models/model_package/<v>/model_package`` →
    ``.../06_models/model_exports/*/model_exports``) made from ``version``.

    Raises:
        PackageError: when there is none.
    """
    root = Path(package_folder).resolve().parents[2] / "model_exports"
    candidates = sorted(root.glob("*/model_exports"), reverse=True)
    for folder in candidates:
        try:
            if read_manifest(FolderFiles(folder))["package_version"] == version:
                return folder
        except (PackageError, json.JSONDecodeError):
            continue
    raise PackageError(
        f"No export of package version {version} under {root}: run `kedro run "
        "--pipelines export` (it exports the newest package) or give --exports"
    )


# --- measuring ----------------------------------------------------------------


def p50_latency_ms(classifier: Classifier, inputs: dict[str, Any], n: int) -> float:
    """Median milliseconds of one contact's prediction by the networks (its
    prepared inputs in, probabilities out), over the first ``n`` rows, after
    one warm-up call."""
    n = min(n, next(iter(inputs.values())).shape[0])
    rows = [{k: v[i : i + 1] for k, v in inputs.items()} for i in range(n)]
    classifier.predict_proba(rows[0])
    times = []
    for row in rows:
        start = time.perf_counter()
        classifier.predict_proba(row)
        times.append(time.perf_counter() - start)
    return float(1000 * np.median(times))
