"""Cross-modal alignment: map text and audio features into one common space.

- :class:`CCAAlignment` is linear: each modality is first reduced (truncated SVD
  for sparse TF-IDF, PCA for dense audio statistics), then CCA finds the
  directions in which the two modalities correlate most.
- :class:`ContrastiveAlignment` is deep: a text tower and an audio tower trained
  with symmetric InfoNCE, so that a contact's text and audio embeddings are
  closer to each other than to other contacts' (CLIP-style).

Both take model-input dicts (``text``, ``audio`` and, for the audio tower,
``audio_frames``) of paired rows, and their quality is measured by cross-modal
retrieval (:func:`retrieval_recall`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.cross_decomposition import CCA
from sklearn.decomposition import PCA, TruncatedSVD

from multimodal_fusion.fusion import (
    KerasPickleMixin,
    dense_enough,
    epoch_progress,
    feed,
    fit_batches,
    frame_stride,
    input_shape,
    nonzero_rows,
    predict_in_batches,
    set_global_seed,
)
from multimodal_fusion.persistence import Stateful

VALIDATION_RECALL = "val_recall@5"


class CCAAlignment(Stateful):
    """Linear alignment of two modalities with CCA.

    Follows scikit-learn's conventions: ``__init__`` stores hyperparameters,
    ``fit`` returns ``self``, learned attributes end in ``_``. With fewer paired
    rows than needed (a single-modality dataset) it learns nothing and
    ``n_components_`` is 0.

    Args:
        n_components: Size of the common space.
        text_components: Truncated-SVD size of the text side before CCA.
        audio_components: PCA size of the audio side before CCA.
        seed: Random state of the reductions.
    """

    method = "cca"

    def __init__(
        self,
        *,
        n_components: int = 16,
        text_components: int = 128,
        audio_components: int = 64,
        seed: int = 42,
    ) -> None:
        self.n_components = n_components
        self.text_components = text_components
        self.audio_components = audio_components
        self.seed = seed

    def fit(self, inputs: dict[str, Any], y=None, *, validation=None) -> CCAAlignment:
        """Fits on paired rows (both modalities); ``y`` and ``validation`` are
        unused."""
        start = time.perf_counter()
        text, audio = inputs["text"], inputs["audio"]
        # At most one reduced dimension per 5 paired rows: CCA overfits otherwise.
        max_dims = text.shape[0] // 5
        text_dims = min(self.text_components, text.shape[1] - 1, max_dims)
        audio_dims = min(self.audio_components, audio.shape[1], max_dims)
        self.n_components_ = max(0, min(self.n_components, text_dims, audio_dims))
        if self.n_components_ >= 1:
            self.text_reducer_ = TruncatedSVD(text_dims, random_state=self.seed).fit(
                text
            )
            self.audio_reducer_ = PCA(audio_dims, random_state=self.seed).fit(audio)
            self.cca_ = CCA(self.n_components_, max_iter=1000).fit(
                self.text_reducer_.transform(text), self.audio_reducer_.transform(audio)
            )
        self.train_seconds_ = time.perf_counter() - start
        return self

    def transform(self, inputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Both modalities in the common space, ``(n, n_components_)`` each."""
        text, audio = inputs["text"], inputs["audio"]
        n_rows = text.shape[0]
        if self.n_components_ < 1 or n_rows == 0:
            empty = np.zeros((n_rows, self.n_components_), np.float32)
            return empty, empty
        text_z, audio_z = self.cca_.transform(
            self.text_reducer_.transform(text), self.audio_reducer_.transform(audio)
        )
        return text_z.astype(np.float32), audio_z.astype(np.float32)


class ContrastiveAlignment(KerasPickleMixin, Stateful):
    """Deep alignment: two towers trained contrastively (symmetric InfoNCE).

    The text tower is Dense+Dropout over TF-IDF, the audio tower Dense+Dropout
    over pooled statistics and (optionally) a CNN over log-mel frames, the same
    branches as the fusion networks; each ends in a linear projection to ``dim``
    and L2 normalisation. Follows scikit-learn's conventions; with fewer than
    ``min_pairs`` paired rows (a single-modality dataset) it learns nothing and
    ``n_components_`` is 0.

    Args:
        dim: Size of the common space.
        branch_units, branch_dropout: Each tower's hidden Dense+Dropout layer.
        audio_frames, conv_channels, conv_kernel: The audio tower's frame CNN.
        temperature: InfoNCE temperature.
        label_weight: Share of each row's InfoNCE target on the other
            modality's rows of the same class (0: its own pair only).
        learning_rate, batch_size, epochs, patience: Adam, with early stopping on
            the validation pairs' loss (on the training loss without them).
        min_pairs: Fewest paired rows to train on.
        seed: Seeds initialisation and shuffling.
    """

    method = "contrastive"
    _keras_attributes = ("text_tower_", "audio_tower_")

    def __init__(
        self,
        *,
        dim: int = 64,
        branch_units: int = 256,
        branch_dropout: float = 0.3,
        audio_frames: bool = True,
        conv_channels: tuple[int, ...] = (64, 96, 128),
        conv_kernel: int = 5,
        temperature: float = 0.1,
        label_weight: float = 0.0,
        learning_rate: float = 1e-3,
        batch_size: int = 128,
        epochs: int = 60,
        patience: int = 6,
        min_pairs: int = 32,
        seed: int = 42,
    ) -> None:
        self.dim = dim
        self.branch_units = branch_units
        self.branch_dropout = branch_dropout
        self.audio_frames = audio_frames
        self.conv_channels = conv_channels
        self.conv_kernel = conv_kernel
        self.temperature = temperature
        self.label_weight = label_weight
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.min_pairs = min_pairs
        self.seed = seed

    def fit(
        self,
        inputs: dict[str, Any],
        y=None,
        *,
        validation: tuple[dict[str, Any], Any] | None = None,
    ) -> ContrastiveAlignment:
        """Fits both towers on paired rows (labels ``y`` are used only with
        ``label_weight`` > 0), early-stopping on ``validation`` pairs."""
        import keras

        from multimodal_fusion.fusions.layers import SymmetricInfoNCE

        n_pairs = inputs["text"].shape[0]
        self.n_components_ = self.dim if n_pairs >= self.min_pairs else 0
        self.text_tower_ = self.audio_tower_ = None
        self.train_seconds_ = 0.0
        if not self.n_components_:
            return self
        frames = inputs.get("audio_frames")
        self.audio_inputs_ = ["audio"]
        if self.audio_frames and frames is not None and np.prod(frames.shape[1:]):
            self.audio_inputs_.append("audio_frames")
        self.sparse_inputs_ = set() if dense_enough(inputs["text"]) else {"text"}
        set_global_seed(self.seed)
        self.text_tower_ = self._tower("text", inputs, ["text"])
        self.audio_tower_ = self._tower("audio", inputs, self.audio_inputs_)
        towers = self._keras_inputs(inputs, ["text", *self.audio_inputs_])
        paired = keras.layers.Concatenate(name="paired")(
            [
                self.text_tower_({"text": towers["text"]}),
                self.audio_tower_({name: towers[name] for name in self.audio_inputs_}),
            ]
        )
        model = keras.Model(towers, paired, name="contrastive_alignment")
        model.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate),
            loss=SymmetricInfoNCE(self.temperature, self.label_weight),
        )
        classes = np.unique(np.asarray(y if y is not None else []))

        def targets(labels, n_rows):
            if labels is None:
                return np.zeros(n_rows, np.int32)
            return np.searchsorted(classes, np.asarray(labels)).astype(np.int32)

        callbacks = []
        if validation is not None and validation[0]["text"].shape[0] >= 2:
            callbacks.append(self._validation_recall(validation[0]))
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=VALIDATION_RECALL if callbacks else "loss",
                mode="max" if callbacks else "min",
                patience=self.patience,
                restore_best_weights=True,
            )
        )
        callbacks.append(epoch_progress(self.epochs, "alignment"))
        start = time.perf_counter()
        history = model.fit(
            fit_batches(
                self._select(inputs),
                targets(y, n_pairs),
                self.batch_size,
                self.seed,
                self._stride(),
            ),
            epochs=self.epochs,
            callbacks=callbacks,
            shuffle=False,  # fit_batches shuffles, with the seed
            verbose=0,
        )
        self.train_seconds_ = time.perf_counter() - start
        self.epochs_ = len(history.history["loss"])
        return self

    def _validation_recall(self, validation: dict[str, Any]):
        """A callback logging the validation pairs' Recall@5 (mean of both
        directions) after each epoch: the early-stopping criterion (InfoNCE on
        validation pairs that share only a class is too noisy for it)."""
        import keras

        def log_recall(epoch, logs):
            text_z, audio_z = self.transform(validation)
            logs[VALIDATION_RECALL] = float(
                np.mean(
                    [
                        retrieval_recall(q, i, [5])["recall@5"]["model"]
                        for q, i in ((text_z, audio_z), (audio_z, text_z))
                    ]
                )
            )

        return keras.callbacks.LambdaCallback(on_epoch_end=log_recall)

    def _keras_inputs(self, inputs: dict[str, Any], names: list[str]) -> dict:
        from multimodal_fusion.fusions.networks import keras_inputs

        return keras_inputs(
            {
                name: {
                    "shape": input_shape(name, inputs[name]),
                    "sparse": name in self.sparse_inputs_,
                }
                for name in names
            }
        )

    def _tower(self, modality: str, inputs: dict[str, Any], names: list[str]):
        import keras

        from multimodal_fusion.fusions.networks import vector_branch

        tensors = self._keras_inputs(inputs, names)
        hidden = vector_branch(
            modality,
            tensors,
            self._branch_hyperparameters(),
            tensors.get("audio_frames"),
        )
        projected = keras.layers.Dense(self.dim, name=f"{modality}_projection")(hidden)
        unit = keras.layers.UnitNormalization(name=f"{modality}_embedding")(projected)
        return keras.Model(tensors, unit, name=f"{modality}_tower")

    def _select(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return feed(inputs, ["text", *self.audio_inputs_], self.sparse_inputs_)

    def _branch_hyperparameters(self) -> dict[str, Any]:
        """What each tower's branch is built from (its frame CNN's stride too)."""
        return {
            "branch_units": self.branch_units,
            "branch_dropout": self.branch_dropout,
            "conv_channels": list(self.conv_channels),
            "conv_kernel": self.conv_kernel,
        }

    def _stride(self) -> int:
        return frame_stride(self._branch_hyperparameters())

    def transform(self, inputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Both modalities in the common space, ``(n, n_components_)`` each."""
        n_rows = inputs["text"].shape[0]
        if not self.n_components_ or n_rows == 0:
            empty = np.zeros((n_rows, self.n_components_), np.float32)
            return empty, empty
        selected = self._select(inputs)
        text_z = predict_in_batches(self.text_tower_, {"text": selected["text"]})
        audio_z = predict_in_batches(
            self.audio_tower_,
            {name: selected[name] for name in self.audio_inputs_},
            multiple=self._stride(),
        )
        return text_z.astype(np.float32), audio_z.astype(np.float32)


Alignment = CCAAlignment | ContrastiveAlignment


def paired_rows(has_text: np.ndarray, has_audio: np.ndarray, text) -> np.ndarray:
    """Rows with both modalities and a non-empty text vector."""
    nonzero = (
        text.getnnz(axis=1) if sparse.issparse(text) else np.abs(text).sum(1)
    ) > 0
    return has_text & has_audio & nonzero


def retrieval_recall(
    queries: np.ndarray, items: np.ndarray, ks: list[int], labels=None
) -> dict:
    """Cross-modal retrieval by cosine similarity, beside random baselines.

    Row ``i`` of ``queries`` matches row ``i`` of ``items``; Recall@k is the share
    of queries whose match ranks in the top ``k`` (random: ``k / n``), a match
    tied with other items counting at the worst of their ranks. With
    ``labels``, ``label_match@1`` is the share of queries whose top item has the
    query's label (random: the sum of squared class shares), which is what
    alignment can reach when the two modalities share only the intent.
    """

    def unit(m):
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)

    similarity = unit(queries) @ unit(items).T
    # Ties count at their worst rank: a match that merely ties with other items
    # (repeated texts, a collapsed embedding) is not retrieved first.
    rank = (similarity >= similarity.diagonal()[:, None]).sum(axis=1) - 1
    n = len(queries)
    scores = {
        f"recall@{k}": {"model": float(np.mean(rank < k)), "random": min(1.0, k / n)}
        for k in ks
    }
    if labels is not None:
        labels = np.asarray(labels)
        _, counts = np.unique(labels, return_counts=True)
        scores["label_match@1"] = {
            "model": float(np.mean(labels[similarity.argmax(axis=1)] == labels)),
            "random": float(np.sum((counts / n) ** 2)),
        }
    return scores


def project(
    inputs: dict[str, Any],
    alignment: Alignment,
    *,
    has_text: np.ndarray,
    has_audio: np.ndarray,
) -> dict[str, np.ndarray]:
    """Model inputs projected into the common space (``text``, ``audio``).

    A row missing a modality (or whose text has no known term) keeps zeros for
    it in the common space too.
    """
    text_z, audio_z = alignment.transform(inputs)
    text_z[~(has_text & nonzero_rows(inputs["text"]))] = 0
    audio_z[~has_audio] = 0
    return {"text": text_z, "audio": audio_z}


def align_inputs(model_inputs: dict[str, Any], alignment: Alignment) -> dict[str, Any]:
    """The same splits with each modality projected into the common space
    (:func:`project`)."""
    return {
        split: {
            **part,
            "inputs": project(
                part["inputs"],
                alignment,
                has_text=part["has"]["text"],
                has_audio=part["has"]["audio"],
            ),
        }
        for split, part in model_inputs.items()
    }
