"""Custom Keras layers of the fusion networks.

Every layer is registered as serialisable (no Lambda layers), so pickled models
load again in a fresh process once this module is imported. Presence flags are
float tensors ``(batch, n_modalities)``, 1.0 where a row has the modality;
sequence masks are float tensors ``(batch, steps)``, 1.0 on real (not padding)
steps.
"""

from __future__ import annotations

import keras
from keras import layers, ops

PACKAGE = "multimodal_fusion"
_NEG_INF = -1e9


def _register(cls):
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)


def _broadcast_rows(flags, like):
    """``flags`` ``(batch,)`` reshaped to broadcast over a tensor like ``like``."""
    return ops.reshape(flags, (-1,) + (1,) * (len(like.shape) - 1))


@_register
class ModalityDropout(layers.Layer):
    """Blanks one modality of a row at random during training.

    Input and output: presence flags ``(batch, n_modalities)``. In training, each
    row with at least two present modalities loses one of them, chosen uniformly
    among its present ones, with probability ``rate``; the network downstream
    then sees that modality as missing. At inference it is the identity.

    Args:
        rate: Probability that a row loses a modality.
        seed: Seed of the layer's random draws.
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {rate}")
        self.rate = rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, presence, training=False):
        if not training or self.rate == 0:
            return presence
        batch, n_modalities = ops.shape(presence)[0], presence.shape[-1]
        drop_row = keras.random.uniform((batch, 1), seed=self.seed_generator)
        several = ops.sum(presence, axis=1, keepdims=True) >= 2
        drop_row = ops.cast(ops.logical_and(drop_row < self.rate, several), "float32")
        scores = presence * (
            1.0 + keras.random.uniform((batch, n_modalities), seed=self.seed_generator)
        )
        victim = ops.one_hot(ops.argmax(scores, axis=1), n_modalities)
        return presence * (1.0 - victim * drop_row)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@_register
class SpecAugment(layers.Layer):
    """SpecAugment-style time and frequency masks on log-mel frames, in training.

    Input and output: standardised frames ``(batch, steps, n_mels)`` whose padding
    is zero. Masked cells are set to zero (the training mean). Time masks are
    placed within each clip's real frames and are at most ``time_width`` of its
    length; frequency masks cover at most ``freq_width`` of the bands.

    Args:
        time_masks, time_width: Number of time masks and their maximum width as a
            share of the clip.
        freq_masks, freq_width: Number of frequency masks and their maximum width
            as a share of the bands.
        seed: Seed of the layer's random draws.
    """

    def __init__(
        self,
        *,
        time_masks: int = 2,
        time_width: float = 0.1,
        freq_masks: int = 2,
        freq_width: float = 0.15,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.time_masks = time_masks
        self.time_width = time_width
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _keep(self, positions, length, n_masks, max_width):
        """``(batch, len(positions))`` ones, zero inside ``n_masks`` random spans."""
        batch = ops.shape(length)[0]
        keep = ops.ones((batch, ops.shape(positions)[-1]))
        for _ in range(n_masks):
            draw = keras.random.uniform((batch, 2), seed=self.seed_generator)
            width = draw[:, :1] * max_width * length
            start = draw[:, 1:] * ops.maximum(length - width, 0.0)
            inside = ops.logical_and(positions >= start, positions < start + width)
            keep = keep * (1.0 - ops.cast(inside, "float32"))
        return keep

    def call(self, frames, training=False):
        if not training:
            return frames
        steps, bands = ops.shape(frames)[1], frames.shape[2]  # any length
        real = ops.cast(ops.any(ops.not_equal(frames, 0), axis=-1), "float32")
        length = ops.sum(real, axis=1, keepdims=True)
        keep_time = self._keep(
            ops.arange(steps, dtype="float32")[None, :],
            length,
            self.time_masks,
            self.time_width,
        )
        keep_freq = self._keep(
            ops.arange(bands, dtype="float32")[None, :],
            ops.full_like(length, float(bands)),
            self.freq_masks,
            self.freq_width,
        )
        return frames * keep_time[:, :, None] * keep_freq[:, None, :]

    def get_config(self):
        return {
            **super().get_config(),
            "time_masks": self.time_masks,
            "time_width": self.time_width,
            "freq_masks": self.freq_masks,
            "freq_width": self.freq_width,
            "seed": self.seed,
        }


@_register
class UtteranceNormalization(layers.Layer):
    """Per-utterance mean and variance normalisation (CMVN) of log-mel frames.

    Each clip's real frames (non-zero; padding is zero) are centred and scaled
    per band with that clip's own statistics, which removes the constant
    spectral colouring of a speaker's voice and microphone. Padding stays zero.
    Input and output: ``(batch, steps, n_mels)``.
    """

    def call(self, frames):
        real = ops.cast(ops.any(ops.not_equal(frames, 0), axis=-1), frames.dtype)
        weights = ops.expand_dims(real, -1)
        count = ops.maximum(ops.sum(weights, axis=1, keepdims=True), 1.0)
        mean = ops.sum(frames * weights, axis=1, keepdims=True) / count
        variance = ops.sum(ops.square(frames - mean) * weights, axis=1, keepdims=True)
        scale = ops.sqrt(variance / count + 1e-3)
        return (frames - mean) / scale * weights


@_register
class SequenceMask(layers.Layer):
    """Float mask ``(batch, steps)`` of a padded sequence, optionally downsampled.

    A step is real when it is non-zero: a token id other than 0 in ``(batch,
    steps)`` integer input, or a frame with any non-zero band in ``(batch, steps,
    bands)`` input. ``pool`` max-pools the mask like a stack of pooling layers
    with ``padding="same"`` and a total stride of ``pool``.
    """

    def __init__(self, pool: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.pool = pool

    def call(self, inputs):
        nonzero = ops.not_equal(inputs, 0)
        if len(inputs.shape) == 3:
            nonzero = ops.any(nonzero, axis=-1)
        mask = ops.cast(nonzero, "float32")
        if self.pool > 1:
            mask = ops.max_pool(
                ops.expand_dims(mask, -1), self.pool, strides=self.pool, padding="same"
            )[:, :, 0]
        return mask

    def get_config(self):
        return {**super().get_config(), "pool": self.pool}


@_register
class MaskModalities(layers.Layer):
    """Zeroes each modality's embedding in the rows where it is missing.

    Inputs: ``[embedding_1, ..., embedding_M, presence]`` where embedding ``i``
    belongs to presence column ``index[i]`` (vectors or sequences). Output: the
    masked embeddings, in order.
    """

    def __init__(self, index: list[int], **kwargs):
        super().__init__(**kwargs)
        self.index = list(index)

    def call(self, inputs):
        *embeddings, presence = inputs
        return [
            embedding * _broadcast_rows(presence[:, i], embedding)
            for embedding, i in zip(embeddings, self.index, strict=True)
        ]

    def get_config(self):
        return {**super().get_config(), "index": self.index}


@_register
class GatedFusion(layers.Layer):
    """Gated multimodal unit (Arevalo et al., 2017) over any number of modalities.

    Each modality ``m`` is projected to ``h_m = tanh(W_m x_m)``; a gate computed
    from all modalities weighs them per unit, ``h = sum_m z_m * h_m`` with
    ``z = softmax_m(W_z [x_1, ..., x_M])``. A missing modality gets no weight,
    so a row with one modality is represented by that modality alone.

    Inputs: ``[x_1, ..., x_M, presence]``. Output: ``(batch, units)``.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        *shapes, _ = input_shape
        self.projections = []
        for i, shape in enumerate(shapes):
            dense = layers.Dense(self.units, activation="tanh", name=f"project_{i}")
            dense.build(shape)
            self.projections.append(dense)
        self.gate = layers.Dense(self.units * len(shapes), name="gate")
        self.gate.build((None, sum(shape[-1] for shape in shapes)))

    def call(self, inputs):
        *embeddings, presence = inputs
        n_modalities = len(embeddings)
        hidden = ops.stack(
            [dense(x) for dense, x in zip(self.projections, embeddings, strict=True)],
            axis=-1,
        )
        logits = ops.reshape(
            self.gate(ops.concatenate(embeddings, axis=-1)),
            (-1, self.units, n_modalities),
        )
        logits = logits + (1.0 - presence[:, None, :]) * _NEG_INF
        return ops.sum(ops.softmax(logits, axis=-1) * hidden, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@_register
class CrossModalAttention(layers.Layer):
    """One direction of cross-modal attention: a query sequence attends to the
    other modality's sequence, with a residual connection and layer norm.

    Inputs: ``[queries (b, tq, d), keys (b, tk, d), query_mask (b, tq),
    key_mask (b, tk), presence (b, n_modalities)]``. Padding keys get no
    attention, and when the key modality is missing the queries pass through
    unchanged. Output: ``(b, tq, d)``.

    Args:
        num_heads, key_dim: Multi-head attention size.
        key_index: The keys' modality column in ``presence``.
        dropout: Dropout on the attention weights.
    """

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        key_index: int,
        dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.key_index = key_index
        self.dropout = dropout

    def build(self, input_shape):
        query_shape, key_shape = input_shape[0], input_shape[1]
        self.query_norm = layers.LayerNormalization(name="query_norm")
        self.query_norm.build(query_shape)
        self.key_norm = layers.LayerNormalization(name="key_norm")
        self.key_norm.build(key_shape)
        self.attention = layers.MultiHeadAttention(
            self.num_heads, self.key_dim, dropout=self.dropout, name="attention"
        )
        self.attention.build(query_shape, key_shape)

    def call(self, inputs, training=False):
        queries, keys, query_mask, key_mask, presence = inputs
        key_present = presence[:, self.key_index]
        key_mask = key_mask * ops.expand_dims(key_present, -1)
        mask = ops.cast(
            ops.expand_dims(query_mask, 2) * ops.expand_dims(key_mask, 1), "bool"
        )
        attended = self.attention(
            self.query_norm(queries),
            self.key_norm(keys),
            attention_mask=mask,
            training=training,
        )
        return queries + attended * ops.reshape(key_present, (-1, 1, 1))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "key_index": self.key_index,
            "dropout": self.dropout,
        }


@_register
class MaskedPooling(layers.Layer):
    """Mean and max over the real steps of a sequence: ``[seq (b, t, d), mask
    (b, t)]`` → ``(b, 2d)``; a row without real steps pools to zeros."""

    def call(self, inputs):
        sequence, mask = inputs
        weights = ops.expand_dims(mask, -1)
        count = ops.sum(weights, axis=1)
        mean = ops.sum(sequence * weights, axis=1) / ops.maximum(count, 1.0)
        peak = ops.max(sequence + (1.0 - weights) * _NEG_INF, axis=1)
        peak = ops.where(count > 0, peak, 0.0)
        return ops.concatenate([mean, peak], axis=-1)

    def compute_output_shape(self, input_shape):
        sequence_shape = input_shape[0]
        return (sequence_shape[0], 2 * sequence_shape[-1])


@_register
class SymmetricInfoNCE(keras.losses.Loss):
    """Symmetric InfoNCE (CLIP's loss) over a batch of paired embeddings.

    ``y_pred`` is ``[text_embedding, audio_embedding]`` concatenated, each half
    L2-normalised. Each row's target distribution over the other modality's rows
    of the batch is its own pair (weight ``1 - label_weight``) and, with
    ``label_weight`` > 0, every row of the same class (``y_true``, integer class
    ids; weight ``label_weight`` shared among them). Returns the mean of the
    text→audio and audio→text cross-entropies per row.

    Args:
        temperature: Softmax temperature of the cosine similarities.
        label_weight: Share of the target on same-class rows (0: pairs only).
    """

    def __init__(
        self,
        temperature: float = 0.1,
        label_weight: float = 0.0,
        name="symmetric_info_nce",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.temperature = temperature
        self.label_weight = label_weight

    def call(self, y_true, y_pred):
        text, audio = ops.split(y_pred, 2, axis=-1)
        logits = ops.matmul(text, ops.transpose(audio)) / self.temperature
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        same = ops.cast(ops.equal(labels[:, None], labels[None, :]), logits.dtype)
        pairs = ops.eye(ops.shape(logits)[0], dtype=logits.dtype)
        target = (1.0 - self.label_weight) * pairs + self.label_weight * same / ops.sum(
            same, axis=1, keepdims=True
        )
        forward = keras.losses.categorical_crossentropy(
            target, logits, from_logits=True
        )
        backward = keras.losses.categorical_crossentropy(
            target, ops.transpose(logits), from_logits=True
        )
        return (forward + backward) / 2

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "label_weight": self.label_weight,
        }
