"""Fitted objects survive the safe state format exactly, and a state that was
tampered with is refused without running anything."""

import pickle
import zipfile

import numpy as np
import pytest
from scipy import sparse

from multimodal_fusion.alignment import CCAAlignment, ContrastiveAlignment
from multimodal_fusion.audio_features import AudioStandardizer
from multimodal_fusion.fusion import (
    FusionClassifier,
    LateFusionClassifier,
    blank_modality,
)
from multimodal_fusion.persistence import (
    ARRAYS_FILE,
    Stateful,
    UnsafeStateError,
    read_state,
    write_state,
)
from multimodal_fusion.text import TextFeaturizer, TokenVocabulary
from tests.pipelines.modeling.test_nodes import MLP, _problem

TEXTS = [
    "my card was lost yesterday",
    "i want a refund for my order",
    "the card never arrived",
    "refund please, the parcel is late",
    "reset my password",
]


def _round_trip(obj, folder):
    write_state({"obj": obj.get_state()}, folder)
    return Stateful.from_state(read_state(folder)["obj"])


class Marker:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_text_featurizer_and_vocabulary_transform_as_fitted(tmp_path):
    featurizer = TextFeaturizer(min_df=1, max_features=50).fit(TEXTS)
    vocabulary = TokenVocabulary(min_count=1).fit(TEXTS)
    unseen = ["my parcel and my card", "", "zzz unknown words"]

    restored = _round_trip(featurizer, tmp_path / "f")
    words = _round_trip(vocabulary, tmp_path / "v")

    assert (restored.transform(unseen) != featurizer.transform(unseen)).nnz == 0
    assert restored.n_features_ == featurizer.n_features_
    np.testing.assert_array_equal(words.transform(unseen), vocabulary.transform(unseen))


def test_audio_standardizer_transforms_as_fitted(tmp_path):
    rng = np.random.default_rng(0)
    pooled, frames = rng.normal(3, 2, (20, 5)), rng.normal(-1, 4, (90, 8))
    standardizer = AudioStandardizer().fit(pooled, frames)
    restored = _round_trip(standardizer, tmp_path)
    n_frames = np.array([30, 0, 60])
    for got, want in zip(
        restored.transform(pooled[:3], frames, n_frames),
        standardizer.transform(pooled[:3], frames, n_frames),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "make",
    [
        lambda: FusionClassifier(
            **{**MLP, "epochs": 3}, modalities=["text", "audio"], fusion="gated"
        ),
        lambda: FusionClassifier(
            **{**MLP, "epochs": 3}, modalities=["text", "audio"], fusion="attention"
        ),
        lambda: LateFusionClassifier(
            modalities=["text", "audio"], members={**MLP, "epochs": 3}
        ),
    ],
    ids=["gated", "attention", "late"],
)
def test_classifiers_predict_the_same_probabilities_after_a_round_trip(make, tmp_path):
    inputs = _problem()
    train, val, test = inputs["train"], inputs["val"], inputs["test"]
    model = make().fit(
        train["inputs"], train["y"], validation=(val["inputs"], val["y"])
    )
    restored = _round_trip(model, tmp_path)
    half = np.arange(len(test["y"])) % 2 == 0
    # Rows with a modality missing too: the inputs keep their meaning and order.
    for inputs in (
        test["inputs"],
        blank_modality(test["inputs"], "text", half),
        blank_modality(test["inputs"], "audio", half),
    ):
        np.testing.assert_array_equal(
            restored.predict_proba(inputs), model.predict_proba(inputs)
        )
    assert list(restored.classes_) == list(model.classes_)


@pytest.mark.parametrize(
    "alignment",
    [
        CCAAlignment(n_components=2, text_components=4, audio_components=3),
        ContrastiveAlignment(dim=4, branch_units=8, epochs=2, min_pairs=8),
    ],
    ids=["cca", "contrastive"],
)
def test_alignments_project_the_same_after_a_round_trip(alignment, tmp_path):
    inputs = _problem()
    train, test = inputs["train"]["inputs"], inputs["test"]["inputs"]
    alignment.fit(train, inputs["train"]["y"])
    restored = _round_trip(alignment, tmp_path)
    for got, want in zip(
        restored.transform(test), alignment.transform(test), strict=True
    ):
        np.testing.assert_array_equal(got, want)


def test_objects_without_a_safe_form_are_not_written(tmp_path):
    with pytest.raises(
        TypeError, match=r"state\.x: a builtin_function_or_method cannot"
    ):
        write_state({"x": len}, tmp_path)
    with pytest.raises(TypeError, match="arrays of Python objects"):
        write_state({"x": np.array([{}], dtype=object)}, tmp_path)
    with pytest.raises(TypeError, match="a csr_matrix"):
        write_state({"x": sparse.csr_matrix((2, 2))}, tmp_path)


def test_a_pickle_in_place_of_the_arrays_is_refused_unexecuted(tmp_path):
    write_state({"weights": np.ones(3)}, tmp_path / "state")
    marker = tmp_path / "pwned"
    (tmp_path / "state" / ARRAYS_FILE).write_bytes(pickle.dumps(Marker(marker)))

    with pytest.raises(UnsafeStateError, match="not a NumPy archive of plain arrays"):
        read_state(tmp_path / "state")
    assert not marker.exists()


def test_an_archive_holding_a_pickled_array_is_refused_unexecuted(tmp_path):
    write_state({"weights": np.ones(3)}, tmp_path / "state")
    marker = tmp_path / "pwned"
    np.savez(
        tmp_path / "state" / ARRAYS_FILE,
        a0=np.array([Marker(marker)], dtype=object),
    )
    assert zipfile.is_zipfile(tmp_path / "state" / ARRAYS_FILE)

    with pytest.raises(UnsafeStateError, match="allow_pickle"):
        read_state(tmp_path / "state")
    assert not marker.exists()


def test_only_allowlisted_classes_are_rebuilt(tmp_path):
    write_state({"m": TokenVocabulary().fit(TEXTS).get_state()}, tmp_path)
    state = read_state(tmp_path)
    state["m"]["class"] = "Popen"
    with pytest.raises(UnsafeStateError, match="'Popen' is not an estimator"):
        Stateful.from_state(state["m"])
