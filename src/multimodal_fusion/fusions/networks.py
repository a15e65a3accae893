"""Keras fusion networks: per-modality encoders, a fusion head, and a training
step that can add adversarial examples.

A network is ``head(encoder(inputs))``. The encoder turns each modality into an
embedding (a vector, or a sequence for attention) and passes on the presence
flags (after modality dropout, in training) and sequence masks; the head masks
missing modalities, fuses and classifies. Keeping the two apart lets
:class:`FusionNetwork` perturb the embeddings adversarially.

Fusion heads (``fusion``):

- ``concat``: masked branch vectors and presence flags, concatenated, then
  Dense+Dropout and a softmax (early fusion, the reference architecture; with one
  modality it is the unimodal baseline).
- ``gated``: a gated multimodal unit weighs the modalities per unit and per row.
- ``attention``: audio frames and text tokens each go through a small
  convolutional front end, attend to each other (multi-head attention in both
  directions), and are mean/max pooled over their real steps.

Inputs by name: ``text`` (TF-IDF, sparse), ``text_tokens`` (token ids, 0 is
padding), ``audio`` (pooled statistics), ``audio_frames`` (standardised log-mel
frames, zero padding) and ``presence`` (``(n, n_modalities)`` flags).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from multimodal_fusion.fusion import frame_stride
from multimodal_fusion.fusions.layers import (
    PACKAGE,
    CrossModalAttention,
    GatedFusion,
    MaskedPooling,
    MaskModalities,
    ModalityDropout,
    SequenceMask,
    SpecAugment,
    UtteranceNormalization,
)

FUSIONS = ("concat", "gated", "attention")
ATTACKS = ("fgsm", "pgd")


def keras_inputs(input_specs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One named ``keras.Input`` per spec (``shape``, ``sparse``, ``dtype``)."""
    return {
        name: keras.Input(
            spec["shape"],
            name=name,
            sparse=spec.get("sparse", False),
            dtype=spec.get("dtype", "float32"),
        )
        for name, spec in input_specs.items()
    }


def _frame_convolutions(frames, hp: dict[str, Any]):
    """Average-pool by ``frame_downsample``, then Conv1D+MaxPool(2) per width of
    ``conv_channels``; returns the sequence and its total stride."""
    channels, kernel_size = hp["conv_channels"], hp["conv_kernel"]
    downsample = hp.get("frame_downsample", 2)
    hidden = layers.AveragePooling1D(
        downsample, padding="same", name="frames_downsample"
    )(frames)
    for i, width in enumerate(channels):
        hidden = layers.Conv1D(
            width,
            kernel_size,
            padding="same",
            activation="relu",
            name=f"frames_conv{i}",
        )(hidden)
        hidden = layers.MaxPooling1D(2, padding="same", name=f"frames_pool{i}")(hidden)
    return hidden, frame_stride(hp)


def vector_branch(modality: str, inputs: dict, hp: dict[str, Any], frames):
    """Dense+Dropout over a modality's vector; the audio branch also sees a CNN
    over log-mel frames when ``frames`` is given, mean- and max-pooled over the
    clip's real frames (padding masked), so the whole clip counts however long
    the padded batch is."""
    features = inputs[modality]
    if frames is not None:
        sequence, stride = _frame_convolutions(frames, hp)
        mask = SequenceMask(pool=stride, name="frames_mask")(frames)
        encoded = MaskedPooling(name="frames_pool")([sequence, mask])
        features = layers.Concatenate(name=f"{modality}_features")([features, encoded])
    dense = layers.Dense(
        hp["branch_units"], activation="relu", name=f"{modality}_dense"
    )
    return layers.Dropout(hp["branch_dropout"], name=f"{modality}_dropout")(
        dense(features)
    )


def _token_sequence(tokens, hp: dict[str, Any], vocabulary_size: int):
    """Token embeddings and a convolution over neighbouring tokens, with the mask."""
    width = hp["attention_dim"]
    embedded = layers.Embedding(vocabulary_size, width, name="token_embedding")(tokens)
    embedded = layers.SpatialDropout1D(hp["branch_dropout"], name="token_dropout")(
        embedded
    )
    sequence = layers.Conv1D(
        width, 3, padding="same", activation="relu", name="token_conv"
    )(embedded)
    return sequence, SequenceMask(name="text_mask")(tokens)


def _frame_sequence(frames, hp: dict[str, Any]):
    """Convolutional front end over log-mel frames, projected to the attention
    width, with the mask of real (downsampled) frames."""
    sequence, stride = _frame_convolutions(frames, hp)
    sequence = layers.Dense(hp["attention_dim"], name="frames_project")(sequence)
    return sequence, SequenceMask(pool=stride, name="audio_mask")(frames)


def _encoder(
    input_specs: dict[str, dict[str, Any]],
    modalities: list[str],
    hp: dict[str, Any],
    seed: int,
):
    inputs = keras_inputs(input_specs)
    presence = inputs["presence"]
    if hp["modality_dropout"]:
        presence = ModalityDropout(
            hp["modality_dropout"], seed, name="modality_dropout"
        )(presence)
    frames = inputs.get("audio_frames")
    if frames is not None and hp.get("frame_normalization"):
        frames = UtteranceNormalization(name="utterance_normalization")(frames)
    if frames is not None and hp["spec_augment"]:
        frames = SpecAugment(**hp["spec_augment"], seed=seed + 1, name="spec_augment")(
            frames
        )
    outputs = {"presence": presence}
    if hp["fusion"] == "attention":
        outputs["text"], outputs["text_mask"] = _token_sequence(
            inputs["text_tokens"], hp, input_specs["text_tokens"]["vocabulary_size"]
        )
        outputs["audio"], outputs["audio_mask"] = _frame_sequence(frames, hp)
        for modality in modalities:
            if modality in inputs:  # utterance-level vectors beside the sequences
                outputs[f"{modality}_vector"] = vector_branch(
                    modality, inputs, hp, None
                )
    else:
        for modality in modalities:
            outputs[modality] = vector_branch(
                modality, inputs, hp, frames if modality == "audio" else None
            )
    return keras.Model(inputs, outputs, name="encoder"), outputs


def _head(
    encoded: dict[str, Any], modalities: list[str], hp: dict[str, Any], n_classes
):
    inputs = {
        name: keras.Input(tensor.shape[1:], name=name)
        for name, tensor in encoded.items()
    }
    presence = inputs["presence"]
    names = [name for name in encoded if _perturbable(name)]
    masked = dict(
        zip(
            names,
            MaskModalities(
                [modalities.index(name.removesuffix("_vector")) for name in names],
                name="mask_missing",
            )([*(inputs[name] for name in names), presence]),
            strict=True,
        )
    )
    if hp["fusion"] == "gated":
        fused = GatedFusion(hp["fusion_units"], name="gated_fusion")(
            [*masked.values(), presence]
        )
    else:
        parts = [masked[name] for name in names if name.endswith("_vector")]
        if hp["fusion"] == "attention":
            parts += _cross_attention(masked, inputs, modalities, hp)
        else:
            parts += [masked[name] for name in modalities]
        fused = layers.Concatenate(name="fusion")([*parts, presence])
        fused = layers.Dense(
            hp["fusion_units"], activation="relu", name="fusion_dense"
        )(fused)
    hidden = layers.Dropout(hp["fusion_dropout"], name="fusion_dropout")(fused)
    outputs = layers.Dense(n_classes, activation="softmax", name="intent")(hidden)
    return keras.Model(inputs, outputs, name="head")


def _cross_attention(masked, inputs, modalities, hp):
    """Each modality's sequence attends to the other's; both are pooled."""
    index = {m: i for i, m in enumerate(modalities)}
    presence = inputs["presence"]
    pooled = []
    for query, key in (("audio", "text"), ("text", "audio")):
        attended = CrossModalAttention(
            hp["attention_heads"],
            hp["attention_dim"] // hp["attention_heads"],
            key_index=index[key],
            dropout=hp["fusion_dropout"],
            name=f"{query}_attends_{key}",
        )(
            [
                masked[query],
                masked[key],
                inputs[f"{query}_mask"],
                inputs[f"{key}_mask"],
                presence,
            ]
        )
        (attended,) = MaskModalities([index[query]], name=f"{query}_attended_mask")(
            [attended, presence]
        )
        pooled.append(
            MaskedPooling(name=f"{query}_pool")([attended, inputs[f"{query}_mask"]])
        )
    return pooled


def build_network(
    input_specs: dict[str, dict[str, Any]],
    modalities: list[str],
    n_classes: int,
    hp: dict[str, Any],
    seed: int,
) -> FusionNetwork:
    """Builds and compiles one fusion network.

    Args:
        input_specs: Per input name: ``shape`` (without batch), ``sparse``,
            ``dtype`` and, for ``text_tokens``, ``vocabulary_size``. Must hold
            ``presence``; ``attention`` needs ``text_tokens`` and ``audio_frames``.
        modalities: Presence columns, in order (``text``, ``audio``).
        n_classes: Size of the softmax.
        hp: Hyperparameters: ``fusion`` (one of :data:`FUSIONS`), ``branch_units``,
            ``branch_dropout``, ``fusion_units``, ``fusion_dropout``,
            ``conv_channels``, ``conv_kernel``, ``attention_dim``,
            ``attention_heads``, ``modality_dropout`` (rate or 0),
            ``spec_augment`` (SpecAugment arguments or None), ``adversarial``
            (see :class:`FusionNetwork`, or None) and ``learning_rate``.
        seed: Seed of the random layers.

    Returns:
        A compiled :class:`FusionNetwork`.
    """
    if hp["fusion"] not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got '{hp['fusion']}'")
    encoder, encoded = _encoder(input_specs, modalities, hp, seed)
    head = _head(encoded, modalities, hp, n_classes)
    network = FusionNetwork(encoder, head, adversarial=hp["adversarial"])
    network.compile(
        optimizer=keras.optimizers.Adam(hp["learning_rate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return network


def _perturbable(name: str) -> bool:
    """Embeddings that adversarial training perturbs (not flags or masks)."""
    return name != "presence" and not name.endswith("_mask")


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusionNetwork(keras.Model):
    """``head(encoder(inputs))`` with optional adversarial training.

    With ``adversarial`` set, each training step adds the loss on adversarial
    examples: perturbations of the encoder's embeddings (``perturb: embeddings``) or
    of the dense float inputs (``perturb: inputs``; sparse TF-IDF and token ids stay
    as they are), found by one normalised gradient step (``method: fgsm``, the
    L2 fast gradient method) or ``steps`` projected steps (``method: pgd``). The
    perturbation of each tensor has an L2 norm of at most ``epsilon`` times that
    tensor's norm, per row. The loss is ``(1 - weight) * clean + weight *
    adversarial``.

    Args:
        encoder, head: The two halves (functional models).
        adversarial: ``{"method", "perturb", "epsilon", "steps", "weight"}`` or None.
    """

    def __init__(self, encoder, head, adversarial: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.head = head
        self.adversarial = _check_adversarial(adversarial)

    def call(self, inputs, training=None):
        return self.head(self.encoder(inputs, training=training), training=training)

    def train_step(self, data):
        import tensorflow as tf

        x, y = data[0], data[1]
        with tf.GradientTape() as tape:
            if self.adversarial:
                y_pred, loss = self._robust_loss(x, y, tape)
            else:
                y_pred = self(x, training=True)
                loss = self.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {metric.name: metric.result() for metric in self.metrics}

    def _robust_loss(self, x, y, tape):
        """Clean and adversarial loss, weighted; the perturbation is a constant."""
        settings = self.adversarial
        if settings["perturb"] == "embeddings":
            encoded = self.encoder(x, training=True)
            targets = {k: v for k, v in encoded.items() if _perturbable(k)}

            def forward(values):
                return self.head({**encoded, **values}, training=True)

        else:
            targets = {
                k: v for k, v in x.items() if k != "presence" and _is_dense_float(v)
            }

            def forward(values):
                return self({**x, **values}, training=True)

        y_pred = forward(targets)
        clean = self.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
        if not targets:
            return y_pred, clean
        with tape.stop_recording():
            delta = self._attack(targets, y, forward)
        adversarial_pred = forward({k: targets[k] + delta[k] for k in targets})
        adversarial = self.compute_loss(
            x=x, y=y, y_pred=adversarial_pred, training=True
        )
        weight = settings["weight"]
        return y_pred, (1.0 - weight) * clean + weight * adversarial

    def _attack(self, targets, y, forward):
        """FGSM (one step) or PGD (``steps`` projected steps) within an L2 ball of
        radius ``epsilon * ||target||`` per row and tensor."""
        import tensorflow as tf

        settings = self.adversarial
        steps = 1 if settings["method"] == "fgsm" else settings["steps"]
        radius = {k: settings["epsilon"] * _row_norm(v) for k, v in targets.items()}
        step = {k: r * (1.0 if steps == 1 else 2.5 / steps) for k, r in radius.items()}
        delta = {k: tf.zeros_like(v) for k, v in targets.items()}
        for _ in range(steps):
            with tf.GradientTape() as tape:
                tape.watch(delta)
                prediction = forward({k: targets[k] + delta[k] for k in targets})
                loss = self.compute_loss(y=y, y_pred=prediction, training=True)
            gradients = tape.gradient(loss, delta)
            delta = {
                k: _project(delta[k] + step[k] * _unit(gradients[k]), radius[k])
                for k in delta
            }
        return {k: tf.stop_gradient(v) for k, v in delta.items()}

    def get_config(self):
        return {
            "name": self.name,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "head": keras.saving.serialize_keras_object(self.head),
            "adversarial": self.adversarial,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for part in ("encoder", "head"):
            config[part] = keras.saving.deserialize_keras_object(config[part])
        return cls(**config)


ADVERSARIAL_KEYS = {"method", "perturb", "epsilon", "steps", "weight"}


def _check_adversarial(settings: dict | None) -> dict | None:
    if not settings:
        return None
    unknown = set(settings) - ADVERSARIAL_KEYS
    if unknown:
        raise ValueError(
            f"adversarial has unknown keys {sorted(map(str, unknown))}; use "
            f"{sorted(ADVERSARIAL_KEYS)} (YAML reads an unquoted 'on' key as True)"
        )
    settings = {"perturb": "embeddings", "steps": 1, "weight": 0.5, **settings}
    if settings.get("method") not in ATTACKS:
        raise ValueError(
            f"adversarial.method must be one of {ATTACKS}, got {settings.get('method')}"
        )
    if settings["perturb"] not in ("embeddings", "inputs"):
        raise ValueError(
            "adversarial.perturb must be 'embeddings' or 'inputs', got "
            f"{settings['perturb']}"
        )
    if "epsilon" not in settings or settings["epsilon"] <= 0:
        raise ValueError("adversarial.epsilon must be a positive number")
    if int(settings["steps"]) < 1 or not 0 < settings["weight"] <= 1:
        raise ValueError("adversarial.steps must be >= 1 and weight in (0, 1]")
    return settings


def _is_dense_float(tensor) -> bool:
    import tensorflow as tf

    return not isinstance(tensor, tf.SparseTensor) and tensor.dtype.is_floating


def _row_norm(tensor):
    """Per-row L2 norm, shaped to broadcast over ``tensor``."""
    axes = list(range(1, len(tensor.shape)))
    return ops.sqrt(ops.sum(ops.square(tensor), axis=axes, keepdims=True))


def _unit(tensor):
    return tensor / ops.maximum(_row_norm(tensor), 1e-12)


def _project(delta, radius):
    return delta * ops.minimum(1.0, radius / ops.maximum(_row_norm(delta), 1e-12))
