"""Runtimes that run a fusion network: Keras (the trained model), LiteRT and
ONNX Runtime (its exports, :mod:`multimodal_fusion.exports`).

A runtime takes the dict of network inputs that
:meth:`~multimodal_fusion.fusion.FusionClassifier._select` builds (one row per
contact, ``presence`` included) and returns class probabilities. Every runtime
cuts padded inputs (``audio_frames``) after each batch's longest clip, rounded
to the network's stride, with :func:`~multimodal_fusion.fusion.trim_padding`,
or pads or cuts them to the length a network built for one length takes.
Sparse inputs are fed dense to the exported networks. The LiteRT and ONNX
runtimes run without TensorFlow (a package still imports it when it loads, to
read its Keras network).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
from scipy import sparse

from multimodal_fusion.fusion import (
    PADDED_INPUTS,
    PREDICT_BATCH_SIZE,
    predict_in_batches,
    trim_padding,
)


class Runtime(Protocol):
    """Runs one network: ``predict(inputs, multiple)`` gives probabilities."""

    format: str

    def predict(self, inputs: dict[str, Any], multiple: int) -> np.ndarray: ...


def batches(
    inputs: dict[str, Any],
    multiple: int,
    widths: dict[str, int | None],
    batch_size: int = PREDICT_BATCH_SIZE,
) -> Iterator[dict[str, np.ndarray]]:
    """``inputs`` in dense batches of ``batch_size`` rows, padded inputs cut
    after each batch's longest row (or to their fixed width in ``widths``)."""
    n_rows = next(iter(inputs.values())).shape[0]
    for start in range(0, max(n_rows, 1), batch_size):
        batch = {}
        for name, matrix in inputs.items():
            rows = matrix[start : start + batch_size]
            if sparse.issparse(rows):
                rows = rows.toarray()
            if name in PADDED_INPUTS and np.ndim(rows) == 3:
                rows = trim_padding(rows, multiple, widths.get(name))
            batch[name] = np.asarray(rows)
        yield batch


class KerasRuntime:
    """The Keras model itself (:func:`~multimodal_fusion.fusion.predict_in_batches`)."""

    def __init__(self, model, format: str = "keras") -> None:
        self.model, self.format = model, format

    def predict(self, inputs: dict[str, Any], multiple: int) -> np.ndarray:
        return predict_in_batches(self.model, inputs, multiple=multiple)


class _ExportedRuntime:
    """An exported network: dense batches cast to its input types, one call
    per batch (``_run``); ``dtypes`` and ``widths`` come from the file."""

    dtypes: dict[str, Any]
    widths: dict[str, int | None]

    def predict(self, inputs: dict[str, Any], multiple: int) -> np.ndarray:
        outputs = []
        for batch in batches(inputs, multiple, self.widths):
            fed = {k: v.astype(self.dtypes[k], copy=False) for k, v in batch.items()}
            outputs.append(self._run(fed))
        return np.concatenate(outputs)

    def _run(self, fed: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class LiteRTRuntime(_ExportedRuntime):
    """A ``.tflite`` network run by ai-edge-litert's interpreter. Its
    signature runner resizes the inputs to each batch's shape (batch size and
    frame length are dynamic in the export)."""

    def __init__(self, content: bytes, format: str = "litert") -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.format = format
        self.interpreter = Interpreter(model_content=content, num_threads=1)
        self.runner = self.interpreter.get_signature_runner()
        details = self.runner.get_input_details()
        self.dtypes = {name: d["dtype"] for name, d in details.items()}
        self.widths = {
            name: (None if d["shape_signature"][1] < 0 else int(d["shape"][1]))
            for name, d in details.items()
            if name in PADDED_INPUTS
        }

    def _run(self, fed: dict[str, np.ndarray]) -> np.ndarray:
        return next(iter(self.runner(**fed).values()))


class OnnxRuntime(_ExportedRuntime):
    """An ``.onnx`` network run by ONNX Runtime on the CPU (dynamic batch and
    frame axes)."""

    TYPES = {
        "tensor(float)": np.float32,
        "tensor(double)": np.float64,
        "tensor(int32)": np.int32,
        "tensor(int64)": np.int64,
    }

    def __init__(self, content: bytes, format: str = "onnx") -> None:
        import onnxruntime as ort

        self.format = format
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            content, options, providers=["CPUExecutionProvider"]
        )
        inputs = self.session.get_inputs()
        self.dtypes = {i.name: self.TYPES[i.type] for i in inputs}
        self.widths = {
            i.name: (i.shape[1] if isinstance(i.shape[1], int) else None)
            for i in inputs
            if i.name in PADDED_INPUTS
        }

    def _run(self, fed: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, fed)[0]
