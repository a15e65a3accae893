"""Cross-modal alignment: map text and audio features into one common space.

``CCAAlignment`` is the linear alignment: each modality is first reduced
(truncated SVD for sparse TF-IDF, PCA for dense audio statistics), then CCA finds
the directions in which the two modalities correlate most. Its quality is
measured by cross-modal retrieval (:func:`retrieval_recall`).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.cross_decomposition import CCA
from sklearn.decomposition import PCA, TruncatedSVD


class CCAAlignment:
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

    def fit(self, text, audio) -> CCAAlignment:
        """Fits on rows that have both modalities (paired rows)."""
        # At most one reduced dimension per 5 paired rows: CCA overfits otherwise.
        max_dims = text.shape[0] // 5
        text_dims = min(self.text_components, text.shape[1] - 1, max_dims)
        audio_dims = min(self.audio_components, audio.shape[1], max_dims)
        self.n_components_ = max(0, min(self.n_components, text_dims, audio_dims))
        if self.n_components_ < 1:
            return self
        self.text_reducer_ = TruncatedSVD(text_dims, random_state=self.seed).fit(text)
        self.audio_reducer_ = PCA(audio_dims, random_state=self.seed).fit(audio)
        self.cca_ = CCA(self.n_components_, max_iter=1000).fit(
            self.text_reducer_.transform(text), self.audio_reducer_.transform(audio)
        )
        return self

    def transform(self, text, audio) -> tuple[np.ndarray, np.ndarray]:
        """Both modalities in the common space, ``(n, n_components_)`` each."""
        n_rows = text.shape[0]
        if self.n_components_ < 1:
            empty = np.zeros((n_rows, 0), np.float32)
            return empty, empty
        text_z, audio_z = self.cca_.transform(
            self.text_reducer_.transform(text), self.audio_reducer_.transform(audio)
        )
        return text_z.astype(np.float32), audio_z.astype(np.float32)


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
    of queries whose match ranks in the top ``k`` (random: ``k / n``). With
    ``labels``, ``label_match@1`` is the share of queries whose top item has the
    query's label (random: the sum of squared class shares), which is what
    alignment can reach when the two modalities share only the intent.
    """

    def unit(m):
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)

    similarity = unit(queries) @ unit(items).T
    rank = (similarity > similarity.diagonal()[:, None]).sum(axis=1)
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
