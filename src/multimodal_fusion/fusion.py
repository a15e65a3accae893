"""Fusion classifiers: one Keras builder serves the unimodal baselines and the
fused models, wrapped in a scikit-learn-style estimator.

Inputs are a dict ``{name: matrix}`` with one row per contact: ``text`` (TF-IDF),
``audio`` (pooled statistics) and ``audio_frames`` (standardised log-mel frames);
a row whose modality is missing holds zeros there. The reference architecture
(early fusion) is a Dense+Dropout branch per modality, Concatenate, Dense,
softmax; Adam; early stopping on the validation split. The audio branch also
sees a small CNN encoding of the frames. With one modality it is a unimodal
network.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from scipy import sparse

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def set_global_seed(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow and makes TF ops deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _audio_frames_encoder(frames, *, channels: list[int], kernel_size: int):
    """Small 1-D CNN over log-mel frames, max-pooled over time (keyword-like
    evidence wherever it occurs in the clip)."""
    from keras import layers

    hidden = layers.AveragePooling1D(2, padding="same", name="frames_downsample")(
        frames
    )
    for i, width in enumerate(channels):
        hidden = layers.Conv1D(
            width,
            kernel_size,
            padding="same",
            activation="relu",
            name=f"frames_conv{i}",
        )(hidden)
        hidden = layers.MaxPooling1D(2, padding="same", name=f"frames_pool{i}")(hidden)
    return layers.GlobalMaxPooling1D(name="frames_max")(hidden)


def build_fusion_mlp(
    input_shapes: dict[str, tuple[int, ...]],
    sparse_inputs: set[str],
    n_classes: int,
    *,
    branch_units: int,
    branch_dropout: float,
    fusion_units: int,
    fusion_dropout: float,
    learning_rate: float,
    conv_channels: list[int],
    conv_kernel: int,
):
    """Compiles the early-fusion network over the given inputs.

    Each modality gets a Dense+Dropout branch; ``audio_frames``, when given, is
    encoded by a small CNN whose output joins the ``audio`` branch. Branches are
    concatenated, then Dense+Dropout and a softmax.

    Args:
        input_shapes: Shape (without batch) of each input, by input name:
            ``text``, ``audio`` and optionally ``audio_frames``.
        sparse_inputs: Inputs fed as sparse matrices (TF-IDF).
        n_classes: Size of the softmax.
        branch_units, branch_dropout: The Dense+Dropout branch per modality.
        fusion_units, fusion_dropout: The Dense+Dropout layer after Concatenate.
        learning_rate: Adam's step size.
        conv_channels, conv_kernel: The frame encoder's layer widths and kernel.

    Returns:
        A compiled ``keras.Model`` with one named input per entry of input_shapes.
    """
    import keras
    from keras import layers

    inputs = {
        name: keras.Input(shape, name=name, sparse=name in sparse_inputs)
        for name, shape in input_shapes.items()
    }
    branches = []
    for modality in ("text", "audio"):
        if modality not in inputs:
            continue
        features = inputs[modality]
        if modality == "audio" and "audio_frames" in inputs:
            encoded = _audio_frames_encoder(
                inputs["audio_frames"], channels=conv_channels, kernel_size=conv_kernel
            )
            features = layers.Concatenate(name="audio_features")([features, encoded])
        branch = layers.Dense(branch_units, activation="relu", name=f"{modality}_dense")
        dropout = layers.Dropout(branch_dropout, name=f"{modality}_dropout")
        branches.append(dropout(branch(features)))
    fused = (
        layers.Concatenate(name="fusion")(branches)
        if len(branches) > 1
        else branches[0]
    )
    hidden = layers.Dense(fusion_units, activation="relu", name="fusion_dense")(fused)
    hidden = layers.Dropout(fusion_dropout, name="fusion_dropout")(hidden)
    outputs = layers.Dense(n_classes, activation="softmax", name="intent")(hidden)
    model = keras.Model(inputs, outputs, name="fusion_network")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def usable_modalities(inputs: dict[str, Any], wanted: list[str]) -> list[str]:
    """The wanted modalities that have features and at least one non-zero row."""
    usable = []
    for name in wanted:
        matrix = inputs.get(name)
        if matrix is None or matrix.shape[1] == 0:
            continue
        nonzero = (
            matrix.getnnz() if sparse.issparse(matrix) else np.count_nonzero(matrix)
        )
        if nonzero:
            usable.append(name)
    return usable


class FusionClassifier:
    """Trains the fusion MLP on whichever of ``modalities`` the data provides.

    Follows scikit-learn's conventions: ``__init__`` stores hyperparameters,
    ``fit`` returns ``self``, learned attributes end in ``_``. When one of its
    modalities has no data at all (say ``text`` on an audio-only dataset), ``fit``
    records ``skipped_reason_`` instead of training and ``predict`` refuses: a
    fusion model over one modality would only repeat the unimodal baseline.
    """

    def __init__(
        self,
        *,
        modalities: list[str],
        branch_units: int = 256,
        branch_dropout: float = 0.3,
        fusion_units: int = 128,
        fusion_dropout: float = 0.3,
        learning_rate: float = 1e-3,
        batch_size: int = 64,
        epochs: int = 60,
        patience: int = 8,
        audio_frames: bool = True,
        conv_channels: tuple[int, ...] = (64, 96, 128),
        conv_kernel: int = 5,
        seed: int = 42,
    ) -> None:
        self.modalities = modalities
        self.branch_units = branch_units
        self.branch_dropout = branch_dropout
        self.fusion_units = fusion_units
        self.fusion_dropout = fusion_dropout
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.audio_frames = audio_frames
        self.conv_channels = conv_channels
        self.conv_kernel = conv_kernel
        self.seed = seed

    def fit(self, inputs: dict, y, *, validation: tuple[dict, Any]) -> FusionClassifier:
        """Fits on ``inputs``/``y`` with early stopping on ``validation``."""
        import keras

        self.modalities_ = usable_modalities(inputs, list(self.modalities))
        self.classes_ = np.unique(np.asarray(y))
        self.skipped_reason_ = None
        self.model_ = None
        missing = [m for m in self.modalities if m not in self.modalities_]
        if missing:
            self.skipped_reason_ = f"no {' or '.join(missing)} features to train on"
            return self
        self.input_names_ = list(self.modalities_)
        frames = inputs.get("audio_frames")
        has_frames = frames is not None and frames.shape[1] > 0
        if "audio" in self.modalities_ and self.audio_frames and has_frames:
            self.input_names_.append("audio_frames")
        set_global_seed(self.seed)
        self.model_ = build_fusion_mlp(
            {name: inputs[name].shape[1:] for name in self.input_names_},
            {name for name in self.input_names_ if sparse.issparse(inputs[name])},
            len(self.classes_),
            branch_units=self.branch_units,
            branch_dropout=self.branch_dropout,
            fusion_units=self.fusion_units,
            fusion_dropout=self.fusion_dropout,
            learning_rate=self.learning_rate,
            conv_channels=list(self.conv_channels),
            conv_kernel=self.conv_kernel,
        )
        val_inputs, val_y = validation
        known = np.isin(val_y, self.classes_)
        stop = keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=self.patience, restore_best_weights=True
        )
        start = time.perf_counter()
        history = self.model_.fit(
            self._select(inputs),
            self._encode(y),
            validation_data=(
                self._select(val_inputs, known),
                self._encode(val_y[known]),
            ),
            epochs=self.epochs,
            batch_size=self.batch_size,
            callbacks=[stop],
            shuffle=True,
            verbose=0,
        )
        self.train_seconds_ = time.perf_counter() - start
        self.history_ = {k: [float(v) for v in vs] for k, vs in history.history.items()}
        self.n_params_ = int(self.model_.count_params())
        return self

    def predict_proba(self, inputs: dict) -> np.ndarray:
        """Class probabilities, shape ``(n_rows, n_classes)``."""
        if self.model_ is None:
            raise RuntimeError(f"This model was not trained: {self.skipped_reason_}")
        return self.model_.predict(self._select(inputs), verbose=0, batch_size=256)

    def predict(self, inputs: dict) -> np.ndarray:
        """Predicted labels."""
        return self.classes_[self.predict_proba(inputs).argmax(axis=1)]

    def _select(self, inputs: dict, rows=None) -> dict:
        return {
            name: inputs[name] if rows is None else inputs[name][rows]
            for name in self.input_names_
        }

    def _encode(self, y) -> np.ndarray:
        return np.searchsorted(self.classes_, np.asarray(y))
