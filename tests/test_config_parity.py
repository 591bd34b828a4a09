"""One config per concept: each Dagster config of the selection, training and sweep assets has exactly
the fields, defaults, bounds and descriptions of the core Params it stands for."""

from __future__ import annotations

import typing

import pytest
from pydantic import ValidationError

from prune_dagster.core import pipeline
from prune_dagster.core.selection.dynamic import DynamicParams
from prune_dagster.core.selection.report import ReportParams
from prune_dagster.core.selection.strategies import SELECT_STRATEGIES, STRATEGIES, PruneParams, ScoreParams
from prune_dagster.core.selection.sweep import SweepModelsParams, SweepScoreParams
from prune_dagster.core.training.augment import AugmentParams
from prune_dagster.core.training.train import DEFAULT_TRAINING, TrainParams
from prune_dagster.defs.assets.steps import step_config
from prune_dagster.defs.assets.sweep import PruningReportConfig, SweepModelsConfig, SweepScoresConfig
from prune_dagster.defs.assets.training import TrainedModelConfig

PruneConfig = step_config(pipeline.step("pruned_dataset"))

# Dagster config → (the core Params it is made of, fields only the wiring has)
PAIRS = [
    (PruneConfig, (PruneParams,), set()),
    (SweepScoresConfig, (SweepScoreParams,), set()),
    (SweepModelsConfig, (SweepModelsParams,), set()),
    (PruningReportConfig, (ReportParams,), set()),
    (TrainedModelConfig, (TrainParams, DynamicParams, AugmentParams), {"log_model"}),
]


def described(field) -> tuple:
    return (field.annotation, field.default, field.description, tuple(map(repr, field.metadata)))


@pytest.mark.parametrize("config, params, own", PAIRS, ids=lambda v: getattr(v, "__name__", ""))
def test_dagster_config_is_its_core_params(config, params, own):
    core = {name: f for p in params for name, f in p.model_fields.items()}
    fields = config.model_fields
    assert set(fields) - own == set(core), "fields differ from the core Params"
    for name, field in core.items():
        assert described(fields[name]) == described(field), f"{config.__name__}.{name} diverges from the core"
    for name, field in fields.items():
        assert field.description, f"{config.__name__}.{name} has no description"


def test_one_default_per_setting():
    # trained_model's effective default (20 epochs) is the core's, the sweep's and train_cnn's
    # 0: the kind's default (the document's CNN: 20 epochs)
    assert TrainedModelConfig().epochs == SweepModelsConfig().epochs == 0 and DEFAULT_TRAINING.epochs == 20
    assert PruneConfig().score_epochs == SweepScoresConfig().score_epochs == ScoreParams().score_epochs
    assert typing.get_args(PruneParams.model_fields["strategy"].annotation) == STRATEGIES + SELECT_STRATEGIES


@pytest.mark.parametrize("params, values, setting", [
    (PruneParams, {"strategy": "el2m"}, "strategy"),
    (PruneParams, {"target_fraction": 1.5}, "target_fraction"),
    (PruneParams, {"target_fraction": 0.0}, "target_fraction"),
    (PruneParams, {"retained_fraction": 0.5}, "renamed target_fraction"),
    (SweepModelsParams, {"schedule": "same_time"}, "schedule"),
    (SweepModelsParams, {"n_seeds": 0}, "n_seeds"),
    (TrainParams, {"epochs": -1}, "epochs"),
    (DynamicParams, {"dynamic": "infobach"}, "dynamic"),
    (DynamicParams, {"prune_ratio": 1.0}, "prune_ratio"),
])
def test_bad_values_are_refused_by_name(params, values, setting):
    with pytest.raises(ValidationError, match=setting):
        params(**values)
