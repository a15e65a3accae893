import keras
import numpy as np
import pytest

from multimodal_fusion.fusions.layers import (
    CrossModalAttention,
    GatedFusion,
    MaskedPooling,
    MaskModalities,
    ModalityDropout,
    SequenceMask,
    SpecAugment,
    SymmetricInfoNCE,
    UtteranceNormalization,
)


def _frames(n=8, steps=40, bands=10, lengths=(40, 30, 20, 10, 40, 30, 20, 10)):
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(n, steps, bands)).astype(np.float32) + 0.5
    for row, length in enumerate(lengths[:n]):
        frames[row, length:] = 0
    return frames


def test_modality_dropout_blanks_one_of_several_modalities_in_training_only():
    presence = np.ones((4000, 2), np.float32)
    presence[:1000, 1] = 0  # rows with text only keep it
    layer = ModalityDropout(0.4, seed=1)
    np.testing.assert_array_equal(layer(presence, training=False), presence)
    dropped = np.asarray(layer(presence, training=True))
    np.testing.assert_array_equal(dropped[:1000], presence[:1000])
    both = dropped[1000:]
    assert (both.sum(axis=1) >= 1).all()  # never both blanked
    assert np.mean(both.sum(axis=1) == 1) == pytest.approx(0.4, abs=0.03)
    assert np.mean(both[:, 0] == 0) == pytest.approx(0.2, abs=0.03)
    with pytest.raises(ValueError, match="modality_dropout"):
        ModalityDropout(1.0)


def test_spec_augment_masks_real_frames_in_training_only():
    frames = _frames()
    layer = SpecAugment(time_masks=2, time_width=0.2, freq_masks=1, freq_width=0.2)
    np.testing.assert_array_equal(layer(frames, training=False), frames)
    masked = np.asarray(layer(frames, training=True))
    assert (masked[frames == 0] == 0).all()  # padding stays padding
    zeroed = (masked == 0) & (frames != 0)
    assert zeroed.any()
    for row, length in enumerate([40, 30, 20, 10, 40, 30, 20, 10]):
        # Two time masks of at most 20 % of the clip each, within the clip.
        masked_steps = np.flatnonzero(zeroed[row].all(axis=1))
        assert len(masked_steps) <= 0.4 * length + 1
        assert (masked_steps < length).all()
        # One band mask of at most 20 % of the 10 bands.
        assert zeroed[row].all(axis=0).sum() <= 2


def test_utterance_normalization_centres_each_clip_and_keeps_padding():
    frames = _frames()
    normalised = np.asarray(UtteranceNormalization()(frames))
    for row, length in enumerate([40, 30, 20, 10]):
        real = normalised[row, :length]
        np.testing.assert_allclose(real.mean(axis=0), 0, atol=1e-4)
        np.testing.assert_allclose(real.std(axis=0), 1, atol=0.01)
        assert not normalised[row, length:].any()
    # A clip's own constant colouring (a shift per band) disappears.
    shifted = frames.copy()
    shifted[0] += np.arange(10, dtype=np.float32)
    np.testing.assert_allclose(
        np.asarray(UtteranceNormalization()(shifted))[0], normalised[0], atol=1e-4
    )


def test_sequence_mask_and_masked_pooling_ignore_padding():
    frames = _frames(n=2, steps=8, bands=3, lengths=(8, 3))
    mask = np.asarray(SequenceMask()(frames))
    assert mask.tolist() == [[1] * 8, [1, 1, 1, 0, 0, 0, 0, 0]]
    assert np.asarray(SequenceMask(pool=4)(frames)).tolist() == [[1, 1], [1, 0]]
    tokens = np.array([[3, 4, 0, 0]])
    assert np.asarray(SequenceMask()(tokens)).tolist() == [[1, 1, 0, 0]]

    sequence = np.arange(8, dtype=np.float32).reshape(1, 4, 2)
    pooled = np.asarray(MaskedPooling()([sequence, np.array([[1, 1, 0, 0]], "f")]))
    assert pooled.tolist() == [[1.0, 2.0, 2.0, 3.0]]  # mean, then max
    empty = np.asarray(MaskedPooling()([sequence, np.zeros((1, 4), "f")]))
    assert not empty.any()


def test_mask_modalities_zeroes_missing_embeddings_of_any_rank():
    vector, sequence = np.ones((2, 3), "f"), np.ones((2, 4, 3), "f")
    presence = np.array([[1, 0], [0, 1]], "f")
    masked_vector, masked_sequence = MaskModalities([0, 1])(
        [vector, sequence, presence]
    )
    assert np.asarray(masked_vector).sum(axis=1).tolist() == [3, 0]
    assert np.asarray(masked_sequence).sum(axis=(1, 2)).tolist() == [0, 12]


def test_gated_fusion_gives_a_missing_modality_no_weight():
    keras.utils.set_random_seed(0)
    layer = GatedFusion(5)
    text, audio = np.random.default_rng(0).normal(size=(2, 4, 3)).astype("f")
    audio_only = np.array([[0, 1]] * 4, "f")
    out = np.asarray(layer([text, audio, audio_only]))
    # An audio-only row is tanh(W_audio x), whatever the text embedding holds.
    np.testing.assert_allclose(out, layer.projections[1](audio), atol=1e-5)
    np.testing.assert_allclose(layer([text + 5, audio, audio_only]), out, atol=1e-5)
    both = np.ones((4, 2), "f")
    assert not np.allclose(layer([text, audio, both]), out)
    assert layer.compute_output_shape([(None, 3), (None, 3), (None, 2)]) == (None, 5)


def test_cross_modal_attention_ignores_padding_and_missing_keys():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(2, 3, 8)).astype("f")
    keys = rng.normal(size=(2, 5, 8)).astype("f")
    query_mask = np.ones((2, 3), "f")
    key_mask = np.array([[1, 1, 1, 0, 0]] * 2, "f")
    both = np.ones((2, 2), "f")
    layer = CrossModalAttention(2, 4, key_index=1)
    out = np.asarray(layer([queries, keys, query_mask, key_mask, both]))
    padded_keys = keys.copy()
    padded_keys[:, 3:] = 100.0
    np.testing.assert_allclose(
        layer([queries, padded_keys, query_mask, key_mask, both]), out, atol=1e-5
    )
    assert not np.allclose(out, queries)
    keys_missing = np.array([[1, 0], [1, 0]], "f")
    np.testing.assert_allclose(
        layer([queries, keys, query_mask, key_mask, keys_missing]), queries, atol=1e-6
    )


def test_symmetric_info_nce_prefers_matching_pairs_and_same_class_rows():
    embeddings = np.eye(4, dtype="f")
    aligned = np.concatenate([embeddings, embeddings], axis=1)
    shuffled = np.concatenate([embeddings, embeddings[[1, 0, 3, 2]]], axis=1)
    loss = SymmetricInfoNCE(temperature=0.1)
    assert float(loss(np.zeros(4), aligned)) < 0.01
    assert float(loss(np.zeros(4), shuffled)) > 5
    # Rows 0/1 and 2/3 share a class: with label_weight 1 the swap within a
    # class costs as much as the exact pairing.
    classes = np.array([0, 0, 1, 1])
    by_class = SymmetricInfoNCE(temperature=0.1, label_weight=1.0)
    assert float(by_class(classes, shuffled)) == pytest.approx(
        float(by_class(classes, aligned)), abs=1e-5
    )
