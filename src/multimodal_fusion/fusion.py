"""Fusion classifiers: one Keras builder serves the unimodal baselines and the
fused models, wrapped in a scikit-learn-style estimator.

Inputs are a dict ``{modality: matrix}`` with one row per contact; a row whose
modality is missing holds zeros there. The reference architecture (early fusion)
is a Dense+Dropout branch per modality, Concatenate, Dense, softmax; Adam; early
stopping on the validation split. With one modality it is a unimodal MLP.
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


def build_fusion_mlp(
    input_dims: dict[str, int],
    sparse_inputs: set[str],
    n_classes: int,
    *,
    branch_units: int,
    branch_dropout: float,
    fusion_units: int,
    fusion_dropout: float,
    learning_rate: float,
):
    """Compiles the early-fusion MLP over the given modalities.

    Args:
        input_dims: Width of each modality's input, in a fixed order.
        sparse_inputs: Modalities fed as sparse matrices (TF-IDF).
        n_classes: Size of the softmax.
        branch_units, branch_dropout: The Dense+Dropout branch per modality.
        fusion_units, fusion_dropout: The Dense+Dropout layer after Concatenate.
        learning_rate: Adam's step size.

    Returns:
        A compiled ``keras.Model`` with one named input per modality.
    """
    import keras
    from keras import layers

    inputs, branches = [], []
    for name, dim in input_dims.items():
        inp = keras.Input((dim,), name=name, sparse=name in sparse_inputs)
        branch = layers.Dense(branch_units, activation="relu", name=f"{name}_dense")(
            inp
        )
        branches.append(layers.Dropout(branch_dropout, name=f"{name}_dropout")(branch))
        inputs.append(inp)
    fused = (
        layers.Concatenate(name="fusion")(branches)
        if len(branches) > 1
        else branches[0]
    )
    hidden = layers.Dense(fusion_units, activation="relu", name="fusion_dense")(fused)
    hidden = layers.Dropout(fusion_dropout, name="fusion_dropout")(hidden)
    outputs = layers.Dense(n_classes, activation="softmax", name="intent")(hidden)
    model = keras.Model(inputs, outputs, name="fusion_mlp")
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
            self.skipped_reason_ = f"this dataset has no {' or '.join(missing)} data"
            return self
        set_global_seed(self.seed)
        self.model_ = build_fusion_mlp(
            {m: inputs[m].shape[1] for m in self.modalities_},
            {m for m in self.modalities_ if sparse.issparse(inputs[m])},
            len(self.classes_),
            branch_units=self.branch_units,
            branch_dropout=self.branch_dropout,
            fusion_units=self.fusion_units,
            fusion_dropout=self.fusion_dropout,
            learning_rate=self.learning_rate,
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
            m: inputs[m] if rows is None else inputs[m][rows] for m in self.modalities_
        }

    def _encode(self, y) -> np.ndarray:
        return np.searchsorted(self.classes_, np.asarray(y))
