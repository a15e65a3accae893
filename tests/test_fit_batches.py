"""Training batches for Keras (``fusion.fit_batches``): every row once per
epoch in an order drawn from the seed, sparse rows kept sparse, and no
TensorFlow C++ error line while a model fits."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from multimodal_fusion import fusion
from multimodal_fusion.fusion import FusionClassifier, fit_batches


def _inputs(n_rows: int) -> dict:
    rng = np.random.default_rng(0)
    return {
        "text": sparse.random(n_rows, 7, density=0.4, format="csr", random_state=0),
        "text_tokens": rng.integers(0, 5, (n_rows, 3)).astype(np.int32),
        "audio": rng.normal(size=(n_rows, 4)),  # float64, fed as float32
    }


def _epoch(batches) -> list[tuple[dict, np.ndarray]]:
    return [
        ({name: tensor for name, tensor in inputs.items()}, rows.numpy())
        for inputs, rows in batches
    ]


def test_every_row_comes_once_per_epoch_in_an_order_drawn_from_the_seed():
    import tensorflow as tf

    inputs = _inputs(10)
    batches = fit_batches(inputs, np.arange(10), 4, seed=3)
    epochs = [_epoch(batches) for _ in range(2)]

    for epoch in epochs:
        assert [len(rows) for _, rows in epoch] == [4, 4, 2]
        assert sorted(np.concatenate([rows for _, rows in epoch])) == list(range(10))
        for batch, rows in epoch:
            assert isinstance(batch["text"], tf.SparseTensor)
            np.testing.assert_array_equal(
                tf.sparse.to_dense(batch["text"]).numpy(),
                inputs["text"][rows].toarray().astype(np.float32),
            )
            np.testing.assert_array_equal(
                batch["text_tokens"], inputs["text_tokens"][rows]
            )
            assert batch["audio"].dtype == tf.float32
            np.testing.assert_allclose(batch["audio"], inputs["audio"][rows], rtol=1e-6)
    orders = [np.concatenate([rows for _, rows in epoch]) for epoch in epochs]
    assert not np.array_equal(orders[0], orders[1])  # a new order every epoch
    again = _epoch(fit_batches(inputs, np.arange(10), 4, seed=3))
    np.testing.assert_array_equal(np.concatenate([r for _, r in again]), orders[0])
    in_order = _epoch(fit_batches(inputs, np.arange(10), 4))
    assert list(np.concatenate([r for _, r in in_order])) == list(range(10))


def test_a_model_fits_sparse_inputs_without_tensorflow_error_lines(capfd, monkeypatch):
    # Keep the TF-IDF sparse, and leave a partial last batch (30 rows, batches
    # of 8): Keras' own batching logged an E0000 line per fit in that case.
    monkeypatch.setattr(fusion, "DENSE_CELLS", 0)
    inputs = _inputs(30)
    labels = np.array(["a", "b", "c"])[np.arange(30) % 3]
    model = FusionClassifier(
        modalities=["text", "audio"],
        branch_units=8,
        fusion_units=8,
        batch_size=8,
        epochs=2,
        seed=0,
    ).fit(inputs, labels, validation=(inputs, labels))

    assert model.sparse_inputs_ == {"text"}
    assert model.epochs_ == 2
    assert model.predict_proba(inputs).shape == (30, 3)
    stderr = capfd.readouterr().err
    assert "E0000" not in stderr and "use_unbounded_threadpool" not in stderr
