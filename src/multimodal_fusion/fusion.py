"""Fusion classifiers as scikit-learn-style estimators around Keras networks.

Inputs are a dict ``{name: matrix}`` with one row per contact: ``text`` (TF-IDF,
sparse), ``text_tokens`` (token ids), ``audio`` (pooled statistics) and
``audio_frames`` (standardised log-mel frames); a row whose modality is missing
holds zeros in that modality's inputs, and the networks see it as missing.

- :class:`FusionClassifier` trains one network (:mod:`multimodal_fusion.fusions`):
  ``concat`` (early fusion; with one modality the unimodal baseline), ``gated``
  or ``attention`` fusion, with optional modality dropout, SpecAugment and
  adversarial training.
- :class:`LateFusionClassifier` trains one classifier per modality and combines
  their log-probabilities with weights fit on the validation split.

:func:`make_classifier` builds either from a variant's parameters.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import time
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import optimize, sparse
from scipy.special import log_softmax

from multimodal_fusion.persistence import Stateful
from multimodal_fusion.text import TokenVocabulary

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The model inputs that carry each modality; a row has a modality when any of
# them is non-zero in that row.
MODALITY_INPUTS = {"text": ("text", "text_tokens"), "audio": ("audio", "audio_frames")}
# FusionClassifier hyperparameters that shape the network (the others choose its
# inputs or drive training).
NETWORK_HYPERPARAMETERS = (
    "fusion",
    "branch_units",
    "branch_dropout",
    "fusion_units",
    "fusion_dropout",
    "conv_channels",
    "conv_kernel",
    "frame_downsample",
    "frame_normalization",
    "attention_dim",
    "attention_heads",
    "modality_dropout",
    "spec_augment",
    "adversarial",
    "learning_rate",
)
# Keras feeds scipy sparse batches slowly: sparse inputs up to this many cells
# (128 MB as float32) are fed dense, which trains about twice as fast.
DENSE_CELLS = 2**25


logger = logging.getLogger(__name__)

# Rows per forward pass at prediction time.
PREDICT_BATCH_SIZE = 256
# One compiled forward function per Keras model (see predict_in_batches).
_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Inputs zero-padded along their second axis (time) to the longest clip of the
# data: the networks take any length, and each batch is cut after its own
# longest row (see trim_padding), so a batch of short clips costs what they
# hold, not what the longest clip holds.
PADDED_INPUTS = ("audio_frames",)


def frame_stride(hp: dict[str, Any]) -> int:
    """Frames per step of the frame CNN's output: its average pooling
    (``frame_downsample``) times one max pooling (2) per convolution."""
    return hp.get("frame_downsample", 2) * 2 ** len(hp["conv_channels"])


def input_shape(name: str, matrix) -> tuple:
    """The shape of one row of input ``name`` a network is built for: any
    length along time for a padded input."""
    shape = tuple(matrix.shape[1:])
    return (None, *shape[1:]) if name in PADDED_INPUTS else shape


def trim_padding(matrix: np.ndarray, multiple: int, width: int | None = None):
    """A padded input cut after the last frame any row holds, rounded up to a
    ``multiple`` of the network's stride (every pooling window stays whole, so
    the outputs are those of the untrimmed batch); with a fixed ``width`` (a
    network built for one length), padded or cut to it."""
    if width is not None:
        if matrix.shape[1] >= width:
            return matrix[:, :width]
        pad = [(0, 0), (0, width - matrix.shape[1])] + [(0, 0)] * (matrix.ndim - 2)
        return np.pad(matrix, pad)
    held = np.any(matrix != 0, axis=tuple(i for i in range(matrix.ndim) if i != 1))
    last = int(np.flatnonzero(held)[-1]) + 1 if held.any() else 1
    return matrix[:, : min(matrix.shape[1], -(-last // multiple) * multiple)]


def _trim_padding_tensor(tensor, multiple: int):
    """:func:`trim_padding` of a batch inside a tf.data pipeline."""
    import tensorflow as tf

    held = tf.reduce_any(tf.not_equal(tensor, 0), axis=[0, 2])
    last = tf.reduce_max(tf.where(held, tf.range(1, tf.shape(tensor)[1] + 1), 1))
    length = tf.minimum(
        tf.shape(tensor)[1], (last + multiple - 1) // multiple * multiple
    )
    return tensor[:, :length]


def set_global_seed(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow and makes TF ops deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def nonzero_rows(matrix) -> np.ndarray:
    """Booleans: which rows of a sparse or dense matrix hold a non-zero value."""
    if sparse.issparse(matrix):
        return matrix.getnnz(axis=1) > 0
    return np.asarray(matrix).reshape(len(matrix), -1).any(axis=1)


def _has_data(inputs: dict[str, Any], name: str) -> bool:
    matrix = inputs.get(name)
    return (
        matrix is not None
        and np.prod(matrix.shape[1:]) > 0
        and bool(nonzero_rows(matrix).any())
    )


def usable_modalities(inputs: dict[str, Any], wanted: list[str]) -> list[str]:
    """The wanted modalities that have features and at least one non-zero row."""
    return [name for name in wanted if _has_data(inputs, name)]


def missing_modalities_reason(inputs: dict[str, Any], wanted: list[str]) -> str | None:
    """Why a model of the ``wanted`` modalities cannot train, or None.

    Inputs in a common space (an alignment's output) have zero columns in every
    modality when the alignment found too few pairs to learn that space, although
    each modality's own features exist: the reason says so.
    """
    missing = [m for m in wanted if m not in usable_modalities(inputs, wanted)]
    if not missing:
        return None
    widths = [np.prod(inputs[m].shape[1:]) for m in wanted if m in inputs]
    if len(wanted) > 1 and len(widths) == len(wanted) and not any(widths):
        return (
            "the common space has 0 dimensions: the alignment found too few "
            "training rows with both text and audio to learn it"
        )
    return f"no {' or '.join(missing)} features to train on"


def presence(inputs: dict[str, Any], names: dict[str, list[str]]) -> np.ndarray:
    """``(n, n_modalities)`` float flags: 1.0 where a row has a modality.

    Args:
        inputs: Model inputs.
        names: Per modality, in column order, the inputs that carry it.
    """
    flags = [
        np.logical_or.reduce([nonzero_rows(inputs[name]) for name in columns])
        for columns in names.values()
    ]
    return np.stack(flags, axis=1).astype(np.float32)


def blank_modality(
    inputs: dict[str, Any], modality: str, rows: np.ndarray | None = None
) -> dict[str, Any]:
    """A copy of ``inputs`` where ``modality`` is missing (zeros) in ``rows``
    (booleans; every row by default)."""
    blanked = dict(inputs)
    for name in MODALITY_INPUTS[modality]:
        if name not in inputs:
            continue
        matrix = inputs[name]
        keep = np.zeros(matrix.shape[0], bool) if rows is None else ~np.asarray(rows)
        if sparse.issparse(matrix):
            blanked[name] = sparse.diags(keep.astype(matrix.dtype)) @ matrix
        else:
            blanked[name] = matrix * keep.reshape((-1,) + (1,) * (matrix.ndim - 1))
    return blanked


def dense_enough(matrix) -> bool:
    """Whether a (sparse) input is small enough to feed the network dense."""
    return not sparse.issparse(matrix) or np.prod(matrix.shape) <= DENSE_CELLS


def feed(
    inputs: dict[str, Any], names: list[str], keep_sparse: set[str], rows=None
) -> dict[str, Any]:
    """The named inputs (rows selected) as the network takes them: sparse
    matrices are made dense unless named in ``keep_sparse``."""
    fed = {}
    for name in names:
        matrix = inputs[name] if rows is None else inputs[name][rows]
        if sparse.issparse(matrix) and name not in keep_sparse:
            matrix = matrix.toarray()
        fed[name] = matrix
    return fed


def _batch_tensor(matrix, dtype):
    """A batch of rows as the tensor the network takes (floats as float32,
    as Keras feeds them)."""
    import tensorflow as tf

    if sparse.issparse(matrix):
        coo = matrix.tocoo()
        return tf.sparse.reorder(
            tf.SparseTensor(
                np.stack([coo.row, coo.col], axis=1).astype(np.int64),
                coo.data.astype(dtype),
                coo.shape,
            )
        )
    return tf.convert_to_tensor(np.asarray(matrix, dtype=dtype))


def _input_spec(matrix, row_shape: tuple):
    import tensorflow as tf

    dtype = np.float32 if np.issubdtype(matrix.dtype, np.floating) else matrix.dtype
    shape = (None, *row_shape)
    if sparse.issparse(matrix):
        return tf.SparseTensorSpec(shape, dtype)
    return tf.TensorSpec(shape, dtype)


def _infer(model, batch):
    return model(batch, training=False)


def predict_in_batches(
    model,
    inputs: dict[str, Any],
    batch_size: int = PREDICT_BATCH_SIZE,
    multiple: int | None = None,
) -> np.ndarray:
    """The outputs of a Keras model on ``inputs`` (name → rows), ``batch_size``
    rows per forward pass in inference mode, as ``model.predict`` computes them.
    With ``multiple`` (the network's frame stride), padded inputs are cut after
    each batch's longest row, or padded or cut to the length a network built
    for one length takes (:func:`trim_padding`).

    ``model.predict`` builds a tf.data pipeline per call, and TF's
    ``make_deterministic`` rewrite of it (on under op determinism) logs an
    ``E0000 ... use_unbounded_threadpool`` error each time; its function is
    also traced again for every new model and batch shape, which TF reports as
    retracing. Here each model gets one compiled function whose batch size is
    left open: it is traced once, and no input pipeline is built.
    """
    import tensorflow as tf

    widths = _fixed_widths(model, inputs) if multiple else {}
    forward = _FORWARD.get(model)
    if forward is None:
        signature = [
            {
                name: _input_spec(matrix, _row_shape(name, matrix, widths))
                for name, matrix in inputs.items()
            }
        ]
        # A partial, not a lambda: TF counts tracings per code object, so the
        # single tracing of each new model's lambda would add up to a
        # "retracing" warning; a partial is counted on its own.
        forward = tf.function(
            functools.partial(_infer, model), input_signature=signature
        )
        _FORWARD[model] = forward
    dtypes = {
        name: spec.dtype.as_numpy_dtype
        for name, spec in forward.input_signature[0].items()
    }
    n_rows = next(iter(inputs.values())).shape[0]

    def batch(name, matrix, start):
        rows = matrix[start : start + batch_size]
        if name in widths:
            rows = trim_padding(rows, multiple, widths[name])
        return _batch_tensor(rows, dtypes[name])

    return np.concatenate(
        [
            forward({name: batch(name, m, start) for name, m in inputs.items()}).numpy()
            for start in range(0, max(n_rows, 1), batch_size)  # 0 rows: one pass
        ]
    )


def _row_shape(name: str, matrix, widths: dict[str, int | None]) -> tuple:
    """The row shape a forward function takes: a padded input at the model's
    fixed length, or of any length; any other input as it is."""
    if name not in widths:
        return tuple(matrix.shape[1:])
    if widths[name] is None:
        return input_shape(name, matrix)
    return (widths[name], *matrix.shape[2:])


def _fixed_widths(model, inputs: dict[str, Any]) -> dict[str, int | None]:
    """Padded inputs → the length the model was built for (None: any length;
    models trained before networks took any length have a fixed one)."""
    functional = getattr(model, "encoder", model)  # FusionNetwork: its encoder
    shapes = {t.name: t.shape for t in getattr(functional, "inputs", None) or []}
    return {
        name: (shapes[name][1] if name in shapes else None)
        for name in PADDED_INPUTS
        if name in inputs and np.ndim(inputs[name]) == 3
    }


def _rows(matrix):
    """A model input as ``_gather_rows`` takes it, converted as Keras converts
    arrays: a sparse matrix as ragged (columns, values) rows and its width,
    floats as float32."""
    import tensorflow as tf

    if sparse.issparse(matrix):
        csr = sparse.csr_matrix(matrix, dtype=np.float32)
        splits = csr.indptr.astype(np.int64)
        columns = tf.RaggedTensor.from_row_splits(csr.indices.astype(np.int64), splits)
        values = tf.RaggedTensor.from_row_splits(csr.data, splits)
        return columns, values, np.int64(csr.shape[1])
    matrix = np.asarray(matrix)
    if np.issubdtype(matrix.dtype, np.floating):
        matrix = matrix.astype(np.float32, copy=False)
    return tf.convert_to_tensor(matrix)


def _gather_rows(rows, index):
    """The rows ``index`` of an input made by ``_rows`` (sparse stays sparse)."""
    import tensorflow as tf

    if not isinstance(rows, tuple):
        return tf.gather(rows, index)
    columns, values, width = rows
    picked = tf.gather(columns, index)
    return tf.SparseTensor(
        tf.stack([picked.value_rowids(), picked.flat_values], axis=1),
        tf.gather(values, index).flat_values,
        tf.stack([tf.size(index, out_type=tf.int64), width]),
    )


def fit_batches(
    inputs: dict[str, Any],
    targets,
    batch_size: int,
    seed=None,
    multiple: int | None = None,
):
    """``(inputs, targets)`` in batches for Keras' ``fit``: a new order every
    epoch, drawn from ``seed``, or the rows in order when ``seed`` is None.
    With ``multiple`` (the network's frame stride), padded inputs are cut
    after each batch's longest row (:func:`trim_padding`).

    Keras batches arrays the same way (indices gathered by a parallel map), but
    takes its last, partial batch from ``Dataset.from_tensors`` inside a
    ``flat_map``. Under op determinism TF's ``make_deterministic`` rewrite counts
    that op as possibly nondeterministic, so it turns prefetching off and the
    parallel map into a sequential one, and with TF 2.21 the rewritten map logs
    ``E0000 ... NodeDef mentions attribute use_unbounded_threadpool`` once per
    fit. Index batches from ``range``, ``shuffle`` and ``batch`` leave nothing
    to rewrite.
    """
    import tensorflow as tf

    n_rows = len(targets)
    data = (
        {name: _rows(matrix) for name, matrix in inputs.items()},
        tf.convert_to_tensor(np.asarray(targets)),
    )
    index = tf.data.Dataset.range(n_rows)
    if seed is not None:
        index = index.shuffle(n_rows, seed=seed, reshuffle_each_iteration=True)
    index = index.batch(batch_size)

    def gather(batch, data):
        features, labels = data
        picked = {name: _gather_rows(rows, batch) for name, rows in features.items()}
        if multiple:
            for name in PADDED_INPUTS:
                if name in picked:
                    picked[name] = _trim_padding_tensor(picked[name], multiple)
        return picked, tf.gather(labels, batch)

    dataset = tf.data.Dataset.zip(
        index, tf.data.Dataset.from_tensors(data).repeat()
    ).map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    # As Keras does: no default graph rewrites, which would copy the arrays.
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def epoch_progress(epochs: int, description: str):
    """A Keras callback drawing the training epochs as a progress bar on a
    terminal (nothing when the output is not one); the bar is removed when
    training ends, so it leaves no line behind."""
    import keras
    from tqdm import tqdm

    class EpochProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = tqdm(
                total=epochs, desc=description, unit="epoch", leave=False, disable=None
            )

        def on_epoch_end(self, epoch, logs=None):
            if logs and "val_loss" in logs:
                self.bar.set_postfix(val_loss=f"{logs['val_loss']:.3f}", refresh=False)
            self.bar.update()

        def on_train_end(self, logs=None):
            self.bar.close()

    return EpochProgress()


def validation_macro_f1(model, validation: tuple[dict, Any]) -> float | None:
    """Macro-F1 of a fitted classifier on the validation rows of known classes
    (None without any)."""
    from sklearn.metrics import f1_score

    val_inputs, val_y = validation
    known = np.isin(val_y, model.classes_)
    if not known.any():
        return None
    rows = {name: matrix[known] for name, matrix in val_inputs.items()}
    return float(
        f1_score(np.asarray(val_y)[known], model.predict(rows), average="macro")
    )


def stack_inputs(*parts: dict[str, Any]) -> dict[str, Any]:
    """Rows of several input dicts (same names and widths; padded inputs are
    padded to the longest), one after another."""
    stacked = {}
    for name in parts[0]:
        matrices = [p[name] for p in parts]
        if sparse.issparse(matrices[0]):
            stacked[name] = sparse.vstack(matrices, format="csr")
            continue
        if name in PADDED_INPUTS and np.ndim(matrices[0]) == 3:
            width = max(m.shape[1] for m in matrices)
            matrices = [trim_padding(m, 1, width) for m in matrices]
        stacked[name] = np.concatenate(matrices)
    return stacked


class KerasPickleMixin:
    """Pickles the Keras models held in ``_keras_attributes`` as bytes, and
    unpickles them after importing the custom layers they need."""

    _keras_attributes: tuple[str, ...] = ("model_",)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_runtime", None)  # an export's interpreter does not pickle
        for name in self._keras_attributes:
            if state.get(name) is not None:
                state[name] = pickle.dumps(state[name])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import multimodal_fusion.fusions.networks  # noqa: F401 - registers layers

        for name in self._keras_attributes:
            if isinstance(state.get(name), bytes):
                state[name] = pickle.loads(state[name])
        self.__dict__.update(state)


class FusionClassifier(KerasPickleMixin, Stateful):
    """Trains a fusion network on whichever of ``modalities`` the data provides.

    Follows scikit-learn's conventions: ``__init__`` stores hyperparameters,
    ``fit`` returns ``self``, learned attributes end in ``_``. When one of its
    modalities has no data at all (say ``text`` on an audio-only dataset), ``fit``
    records ``skipped_reason_`` instead of training and ``predict`` refuses: a
    fusion model over one modality would only repeat the unimodal baseline.
    Rows missing a modality are predicted from the other one.

    Args:
        modalities: ``text`` and/or ``audio``.
        fusion: ``concat`` (early fusion), ``gated`` or ``attention``.
        branch_units, branch_dropout: Dense+Dropout branch per modality.
        fusion_units, fusion_dropout: Size of the fused layer and its dropout.
        audio_frames: Whether the audio branch also sees a CNN over log-mel
            frames (``concat``/``gated``; ``attention`` always uses frames).
        conv_channels, conv_kernel: The frame CNN's widths and kernel size.
        frame_downsample: Average pooling of the frames before the CNN.
        frame_normalization: Whether each clip's frames are normalised with its
            own mean and variance per band (CMVN) before the CNN.
        attention_dim, attention_heads: Width of the attention sequences and
            number of heads (``attention``).
        attention_vectors: Whether ``attention`` also sees the utterance-level
            vectors (TF-IDF, pooled audio statistics) beside the sequences.
        modality_dropout: Probability of blanking one modality of a training row.
        spec_augment: SpecAugment arguments (time/frequency masks) or None.
        adversarial: Adversarial training settings (``method`` fgsm/pgd, ``perturb``
            embeddings/inputs, ``epsilon``, ``steps``, ``weight``) or None.
        learning_rate, batch_size, epochs, patience: Adam and early stopping on
            the validation loss.
        seed: Seeds initialisation, shuffling and the random layers.
    """

    def __init__(
        self,
        *,
        modalities: list[str],
        fusion: str = "concat",
        branch_units: int = 256,
        branch_dropout: float = 0.3,
        fusion_units: int = 128,
        fusion_dropout: float = 0.3,
        audio_frames: bool = True,
        conv_channels: tuple[int, ...] = (64, 96, 128),
        conv_kernel: int = 5,
        frame_downsample: int = 2,
        frame_normalization: bool = False,
        attention_dim: int = 64,
        attention_heads: int = 4,
        attention_vectors: bool = True,
        modality_dropout: float = 0.0,
        spec_augment: dict[str, Any] | None = None,
        adversarial: dict[str, Any] | None = None,
        learning_rate: float = 1e-3,
        batch_size: int = 64,
        epochs: int = 60,
        patience: int = 8,
        seed: int = 42,
    ) -> None:
        self.modalities = modalities
        self.fusion = fusion
        self.branch_units = branch_units
        self.branch_dropout = branch_dropout
        self.fusion_units = fusion_units
        self.fusion_dropout = fusion_dropout
        self.audio_frames = audio_frames
        self.conv_channels = conv_channels
        self.conv_kernel = conv_kernel
        self.frame_downsample = frame_downsample
        self.frame_normalization = frame_normalization
        self.attention_dim = attention_dim
        self.attention_heads = attention_heads
        self.attention_vectors = attention_vectors
        self.modality_dropout = modality_dropout
        self.spec_augment = spec_augment
        self.adversarial = adversarial
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.seed = seed

    def _inputs_by_modality(self, inputs: dict[str, Any]) -> dict[str, list[str]]:
        """The inputs the network reads for each usable modality."""
        if self.fusion == "attention":
            vectors = self.attention_vectors
            return {
                "text": ["text_tokens"] + (["text"] if vectors else []),
                "audio": ["audio_frames"] + (["audio"] if vectors else []),
            }
        names = {m: [m] for m in self.modalities_}
        if "audio" in names and self.audio_frames and _has_data(inputs, "audio_frames"):
            names["audio"].append("audio_frames")
        return names

    def _skip_reason(self, inputs: dict[str, Any]) -> str | None:
        missing = missing_modalities_reason(inputs, list(self.modalities))
        if missing:
            return missing
        if self.fusion == "attention":
            lacking = [n for n in ("text_tokens", "audio_frames") if n not in inputs]
            if lacking or set(self.modalities_) != {"text", "audio"}:
                return (
                    "attention fusion needs text tokens and audio frames; these "
                    f"inputs lack {lacking or 'a modality'}"
                )
        return None

    def fit(
        self,
        inputs: dict,
        y,
        *,
        validation: tuple[dict, Any],
        callbacks: Sequence[Any] = (),
    ) -> FusionClassifier:
        """Fits on ``inputs``/``y`` with early stopping on ``validation``;
        ``callbacks`` are extra Keras callbacks (the tuning pipeline's pruning)."""
        import keras

        from multimodal_fusion.fusions.networks import build_network

        self.modalities_ = usable_modalities(inputs, list(self.modalities))
        self.classes_ = np.unique(np.asarray(y))
        self.n_train_rows_ = len(y)
        self.model_ = None
        self.skipped_reason_ = self._skip_reason(inputs)
        if self.skipped_reason_:
            return self
        self.inputs_by_modality_ = self._inputs_by_modality(inputs)
        self.input_names_ = [n for ns in self.inputs_by_modality_.values() for n in ns]
        self.sparse_inputs_ = {
            name for name in self.input_names_ if not dense_enough(inputs[name])
        }
        specs = {
            name: {
                "shape": input_shape(name, inputs[name]),
                "sparse": name in self.sparse_inputs_,
                "dtype": str(inputs[name].dtype),
            }
            for name in self.input_names_
        }
        if "text_tokens" in specs:
            self.vocabulary_size_ = int(inputs["text_tokens"].max()) + 1
            specs["text_tokens"]["vocabulary_size"] = self.vocabulary_size_
        specs["presence"] = {
            "shape": (len(self.inputs_by_modality_),),
            "sparse": False,
            "dtype": "float32",
        }
        set_global_seed(self.seed)
        self.model_ = build_network(
            specs,
            list(self.inputs_by_modality_),
            len(self.classes_),
            self._hyperparameters(),
            self.seed,
        )
        val_inputs, val_y = validation
        known = np.isin(val_y, self.classes_)
        stop = keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=self.patience, restore_best_weights=True
        )
        start = time.perf_counter()
        history = self.model_.fit(
            fit_batches(
                self._select(inputs),
                self._encode(y),
                self.batch_size,
                self.seed,
                self._stride(),
            ),
            validation_data=fit_batches(
                self._select(val_inputs, known),
                self._encode(val_y[known]),
                self.batch_size,
                multiple=self._stride(),
            ),
            epochs=self.epochs,
            callbacks=[
                stop,
                epoch_progress(self.epochs, "+".join(self.modalities_)),
                *callbacks,
            ],
            shuffle=False,  # fit_batches shuffles, with the seed
            verbose=0,
        )
        self.train_seconds_ = time.perf_counter() - start
        self.history_ = {k: [float(v) for v in vs] for k, vs in history.history.items()}
        self.epochs_ = len(self.history_["loss"])
        self.n_params_ = int(self.model_.count_params())
        self.val_macro_f1_ = validation_macro_f1(self, validation)
        return self

    def _hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters the network builder reads."""
        return {name: getattr(self, name) for name in NETWORK_HYPERPARAMETERS}

    # The runtime that runs the network instead of ``model_`` (an export, see
    # multimodal_fusion.exports.use_runtimes); None: the Keras model.
    _runtime = None

    def predict_proba(self, inputs: dict) -> np.ndarray:
        """Class probabilities, shape ``(n_rows, n_classes)``, from the Keras
        model or, when one is set, the runtime of an export."""
        if self.model_ is None:
            raise RuntimeError(f"This model was not trained: {self.skipped_reason_}")
        if self._runtime is not None:
            return self._runtime.predict(self._select(inputs), self._stride())
        return predict_in_batches(
            self.model_, self._select(inputs), multiple=self._stride()
        )

    def _stride(self) -> int:
        return frame_stride(self._hyperparameters())

    def predict(self, inputs: dict) -> np.ndarray:
        """Predicted labels."""
        return self.classes_[self.predict_proba(inputs).argmax(axis=1)]

    def _select(self, inputs: dict, rows=None) -> dict:
        """The network's inputs (rows selected) and the presence flags."""
        selected = feed(inputs, self.input_names_, self.sparse_inputs_, rows)
        if "text_tokens" in selected:
            tokens = selected["text_tokens"]
            selected["text_tokens"] = np.where(
                tokens < self.vocabulary_size_, tokens, TokenVocabulary.OOV
            )
        selected["presence"] = presence(selected, self.inputs_by_modality_)
        return selected

    def _encode(self, y) -> np.ndarray:
        return np.searchsorted(self.classes_, np.asarray(y))


class LateFusionClassifier(Stateful):
    """One classifier per modality; their log-probabilities are summed with one
    non-negative weight per modality, fit on the validation split (minimum
    log-loss). A row missing a modality is predicted from the others alone.

    Follows scikit-learn's conventions (see :class:`FusionClassifier`, whose
    skipping rule it shares).

    Args:
        modalities: The modalities to combine.
        members: :class:`FusionClassifier` hyperparameters of the per-modality
            classifiers (without ``modalities``).
        seed: The project seed.
    """

    def __init__(
        self, *, modalities: list[str], members: dict[str, Any], seed: int = 42
    ) -> None:
        self.modalities = modalities
        self.members = members
        self.seed = seed

    def fit(
        self,
        inputs: dict,
        y,
        *,
        validation: tuple[dict, Any],
        callbacks: Sequence[Any] = (),
    ) -> LateFusionClassifier:
        """Fits each modality's classifier (each with ``callbacks``), then the
        weights on ``validation``."""
        self.modalities_ = usable_modalities(inputs, list(self.modalities))
        self.classes_ = np.unique(np.asarray(y))
        self.n_train_rows_ = len(y)
        self.skipped_reason_ = missing_modalities_reason(inputs, list(self.modalities))
        self.members_ = {}
        if self.skipped_reason_:
            return self
        for modality in self.modalities_:
            self.members_[modality] = FusionClassifier(
                **{**self.members, "modalities": [modality]}, seed=self.seed
            ).fit(inputs, y, validation=validation, callbacks=callbacks)
        return self._fit_weights(validation)

    @classmethod
    def of_trained(
        cls, members: dict[str, FusionClassifier], validation: tuple[dict, Any]
    ) -> LateFusionClassifier:
        """Combines already trained unimodal classifiers (modality → model, each
        trained on that modality alone) with weights fit on ``validation``: the
        same model as :meth:`fit` with their hyperparameters, without training
        them again. Skipped, like :meth:`fit`, when a member was skipped."""
        first = next(iter(members.values()))
        hyperparameters = {
            k: v
            for k, v in first.get_params().items()
            if k not in ("modalities", "seed")
        }
        model = cls(modalities=list(members), members=hyperparameters, seed=first.seed)
        model.modalities_ = [m for m, c in members.items() if not c.skipped_reason_]
        model.classes_ = first.classes_
        model.n_train_rows_ = first.n_train_rows_
        model.skipped_reason_ = next(
            (c.skipped_reason_ for c in members.values() if c.skipped_reason_), None
        )
        model.members_ = {} if model.skipped_reason_ else dict(members)
        model.reused_members_ = True
        if model.skipped_reason_:
            return model
        return model._fit_weights(validation)

    def _fit_weights(self, validation: tuple[dict, Any]) -> LateFusionClassifier:
        """Fits one weight per member (minimum validation log-loss)."""
        val_inputs, val_y = validation
        known = np.isin(val_y, self.classes_)
        scores = self._member_scores({k: v[known] for k, v in val_inputs.items()})
        target = np.searchsorted(self.classes_, np.asarray(val_y)[known])

        def log_loss(weights):
            combined = self._combine(weights, scores)
            return -combined[np.arange(len(target)), target].mean()

        fitted = optimize.minimize(
            log_loss,
            np.ones(len(self.members_)),
            method="L-BFGS-B",
            bounds=[(0.0, 10.0)] * len(self.members_),
        )
        self.weights_ = dict(zip(self.members_, map(float, fitted.x), strict=True))
        members = self.members_.values()
        self.train_seconds_ = sum(m.train_seconds_ for m in members)
        self.epochs_ = sum(m.epochs_ for m in members)
        self.n_params_ = sum(m.n_params_ for m in members) + len(self.weights_)
        self.val_macro_f1_ = validation_macro_f1(self, validation)
        return self

    def _member_scores(self, inputs: dict) -> np.ndarray:
        """``(n_modalities, n_rows, n_classes)`` log-probabilities of the members,
        zero in the rows that lack the member's modality."""
        scores = []
        for member in self.members_.values():
            has = presence(inputs, member.inputs_by_modality_)[:, 0]
            log_proba = np.log(np.clip(member.predict_proba(inputs), 1e-7, 1.0))
            scores.append(log_proba * has[:, None])
        return np.stack(scores)

    @staticmethod
    def _combine(weights: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Log-probabilities of the weighted sum of the members' scores."""
        return log_softmax(np.einsum("m,mnc->nc", weights, scores), axis=1)

    def predict_proba(self, inputs: dict) -> np.ndarray:
        """Class probabilities, shape ``(n_rows, n_classes)``."""
        if self.skipped_reason_:
            raise RuntimeError(f"This model was not trained: {self.skipped_reason_}")
        weights = np.array([self.weights_[m] for m in self.members_])
        return np.exp(self._combine(weights, self._member_scores(inputs)))

    def predict(self, inputs: dict) -> np.ndarray:
        """Predicted labels."""
        return self.classes_[self.predict_proba(inputs).argmax(axis=1)]


Classifier = FusionClassifier | LateFusionClassifier


def make_classifier(params: dict[str, Any], seed: int) -> Classifier:
    """The estimator of a variant: ``fusion: late`` gives a
    :class:`LateFusionClassifier` (its other keys are the members'
    hyperparameters), anything else a :class:`FusionClassifier`."""
    params = dict(params)
    if params.get("fusion") == "late":
        params.pop("fusion")
        return LateFusionClassifier(
            modalities=params.pop("modalities"), members=params, seed=seed
        )
    return FusionClassifier(**params, seed=seed)
