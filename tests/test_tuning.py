"""The tuning pipeline end to end: ``kedro run --pipelines tuning`` with a tiny
budget in a real Kedro session, on the toy dataset's model inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import plotly.io
import pytest
import yaml
from kedro.framework.session import KedroSession
from optuna.trial import TrialState

from multimodal_fusion.errors import UserInputError
from multimodal_fusion.pipelines.tuning.nodes import variant_search_space
from tests.project_copy import TOY_N, copy_project, in_project, outputs, run_session
from tests.toy_data import write_toy_dataset

VARIANT = "early_fusion"
MODEL_INPUTS = "05_model_input/model_inputs.pkl"
# Two trials of at most two epochs, no CNN over the frames (the suite checks
# plumbing, not scores). The variant's current epochs (trial 0) must lie in the
# searched range.
TINY = {
    VARIANT: {"model": {"epochs": 2, "audio_frames": False}},
    "tuning": {
        "n_trials": 2,
        "timeout_s": 600,
        "pruner": {"n_startup_trials": 1, "n_warmup_steps": 0},
        "search_space": {"epochs": {"low": 1, "high": 2, "step": 1}},
    },
}


def _versions(path: Path) -> list[Path]:
    """The saved versions of a versioned file dataset, oldest first."""
    return sorted(p / path.name for p in path.iterdir())


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project on the toy dataset (the toy project's data), run up to its
    model inputs (no training), then tuned twice. Not a copy of the toy
    project: that would tie these tests to the worker that builds it."""
    project = copy_project(tmp_path_factory.mktemp("tuning") / "project")
    write_toy_dataset(project / "data/01_raw", n=TOY_N)
    run_session(project, to_nodes=["modeling.build_model_inputs"])
    assert (project / outputs() / MODEL_INPUTS).is_file()
    for _ in range(2):
        run_session(
            project, pipeline_name="tuning", runtime_params=TINY, namespaces=[VARIANT]
        )
    return project


def _studies(project: Path) -> list[optuna.Study]:
    storage = f"sqlite:///{project / outputs()}/06_models/tuning/{VARIANT}/study.db"
    names = sorted(
        name
        for name in optuna.study.get_all_study_names(storage)
        if name.startswith(f"{VARIANT}/")
    )
    return [optuna.load_study(study_name=name, storage=storage) for name in names]


def test_each_run_saves_a_study_version_with_its_trials(tuned):
    studies = _studies(tuned)

    # Versioned: the second run saved its study beside the first.
    assert [len(study.trials) for study in studies] == [2, 2]
    for study in studies:
        trials = study.trials
        assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
        # Trial 0 trains the current parameters and is never pruned.
        assert trials[0].state == TrialState.COMPLETE
        assert trials[0].params["epochs"] == 2
        assert trials[0].params["learning_rate"] == pytest.approx(0.001)
        # The pruning callback reported every epoch.
        assert trials[0].intermediate_values
        assert 0 <= study.best_value <= 1
        assert study.best_value >= trials[0].value
    # The same seed and budget: the same trials, to the last digit of the scores.
    first, second = ([(t.params, t.value) for t in s.trials] for s in studies)
    assert first == second


def test_the_tuned_parameters_load_into_the_modeling_parameters(tuned, tmp_path):
    folder = tuned / outputs() / f"06_models/tuning/{VARIANT}/parameters_modeling.yml"
    versions = _versions(folder)
    assert len(versions) == 2
    tuned_values = yaml.safe_load(versions[-1].read_text())
    best = _studies(tuned)[-1].best_params

    assert set(tuned_values) == {"_tuned", VARIANT}
    assert tuned_values[VARIANT] == {"model": best}
    assert set(best) == {
        "learning_rate",
        "branch_units",
        "branch_dropout",
        "fusion_units",
        "fusion_dropout",
        "modality_dropout",
        "epochs",
    }
    # Copied into an environment, the values override the base parameters of
    # the variant and keep the others.
    project = copy_project(tmp_path / "project")
    (project / "conf/tuned").mkdir()
    shutil.copy2(versions[-1], project / "conf/tuned/parameters_modeling.yml")
    with (
        in_project(project),
        KedroSession.create(project_path=project, env="tuned") as session,
    ):
        params = session.load_context().params
    model = params[VARIANT]["model"]
    assert {name: model[name] for name in best} == best
    assert model["modalities"] == ["text", "audio"]
    assert model["patience"] == 8


def test_the_importance_plot_is_a_plotly_figure_per_run(tuned):
    folder = tuned / outputs() / f"08_reporting/tuning/{VARIANT}/importance.json"
    versions = _versions(folder)
    figure = plotly.io.from_json(versions[-1].read_text())

    assert len(versions) == 2
    assert figure.layout.title.text.startswith(f"{VARIANT}: hyperparameter importance")


EARLY = {
    "modalities": ["text", "audio"],
    "fusion": "concat",
    "learning_rate": 0.001,
    "modality_dropout": 0.0,
    "epochs": 80,
}
SPACE = {
    "learning_rate": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
    "modality_dropout": {"low": 0.0, "high": 0.6},
    "epochs": {"low": 20, "high": 120, "step": 20},
    "attention_dim": {"choices": [32, 64]},
}


def test_a_variant_searches_only_the_hyperparameters_it_has():
    assert set(variant_search_space("early_fusion", EARLY, SPACE)) == {
        "learning_rate",
        "modality_dropout",
        "epochs",
    }
    # One network per modality: blanking a modality would blank its only input.
    late = {**EARLY, "fusion": "late"}
    assert "modality_dropout" not in variant_search_space("late", late, SPACE)
    unimodal = {**EARLY, "modalities": ["audio"]}
    assert "modality_dropout" not in variant_search_space("audio", unimodal, SPACE)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"epochs": {"low": 20, "high": 60}}, "early_fusion's epochs is 80, outside"),
        ({"epochs": {"low": 10, "high": 120, "step": 20}}, "epochs is 80, outside"),
        ({"learning_rate": {"choices": [0.1]}}, "learning_rate is 0.001, outside"),
        ({"epochs": [20, 120]}, "tuning.search_space.epochs"),
        ({"epochs": {"low": 20}}, "give {choices: [...]} or {low: ..., high: ...}"),
    ],
)
def test_a_bad_search_space_is_a_user_error_naming_the_entry(space, message):
    with pytest.raises(UserInputError, match="parameters_tuning.yml") as error:
        variant_search_space("early_fusion", EARLY, space)
    assert message in str(error.value)
