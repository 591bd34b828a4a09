"""One declaration of the pruning steps: the jobs, floors, summary, incremental index and Dagster
configs all read `prune_dagster.core.pipeline`, and each step's settings are one typed Params model."""

import typing

import dagster as dg
import numpy as np
import pytest
from pydantic import ValidationError

from prune_dagster.core import pipeline
from prune_dagster.core.ledger import Selection, StepRecord, StepResult, removed_frame
from prune_dagster.core.steps.label_noise import FILTERS, LabelNoiseParams
from prune_dagster.core.steps.outliers import OutlierParams
from prune_dagster.defs.config import to_params

# The Config defaults before the Params models existed (defs/assets/{cleaning,shaping,ingest}.py).
OLD_DEFAULTS = {
    "validated": {"drop_blank": True, "overrides": ""},
    "properties_checked": {"enabled": False, "k": 5.0, "skip": []},  # new step (issue 15): off by default
    "exact_deduplicated": {"enabled": True, "conflict_policy": "drop_all", "check_test_leaks": True},
    "near_deduplicated": {"enabled": True, "threshold": 0.3, "keep": "first", "n_components": 32, "seed": 0},
    "outliers_removed": {"enabled": True, "method": "knn", "contamination": 0.0, "z_threshold": 4.0,
                         "n_components": 64, "seed": 0},
    "label_noise_removed": {"enabled": True, "classifier": "svc", "folds": 5,
                            "filter_by": "predicted_neq_given+recheck", "seed": 0},
    "class_balanced": {"enabled": True, "sampler": "smote", "max_imbalance": 2.0, "seed": 0},
    "features_selected": {"enabled": True, "method": "variance", "threshold": 0.0, "keep_fraction": 0.75,
                          "measure": True, "seed": 0},
    "pruned_dataset": {"enabled": True, "strategy": "el2n", "retained_fraction": 0.8, "score_epochs": 5,
                       "score_seeds": 3, "per_class": True, "seed": 0},
}
CONFIGS = {
    "validated": "prune_dagster.defs.assets.ingest.ValidateConfig",
    "properties_checked": "prune_dagster.defs.assets.properties.PropertyConfig",
    "exact_deduplicated": "prune_dagster.defs.assets.cleaning.ExactDedupConfig",
    "near_deduplicated": "prune_dagster.defs.assets.cleaning.NearDedupConfig",
    "outliers_removed": "prune_dagster.defs.assets.cleaning.OutlierConfig",
    "label_noise_removed": "prune_dagster.defs.assets.cleaning.LabelNoiseConfig",
    "class_balanced": "prune_dagster.defs.assets.shaping.BalanceConfig",
    "features_selected": "prune_dagster.defs.assets.shaping.FeatureConfig",
    "pruned_dataset": "prune_dagster.defs.assets.selection.PruneConfig",
}
STEPS_WITH_PARAMS = list(pipeline.PIPELINE)


def config_class(step):
    module, name = CONFIGS[step].rsplit(".", 1)
    return getattr(__import__(module, fromlist=[name]), name)


def test_the_pipeline_is_the_graph_the_jobs_floors_and_groups_use():
    from prune_dagster.definitions import defs
    from prune_dagster.defs.checks import REMOVAL_FLOORS
    from prune_dagster.defs.jobs import PRUNE_GRAPH

    names = pipeline.names()
    assert names[0] == "validated" and names[-1] == pipeline.SCORE_STEP == "pruned_dataset"
    graph = pipeline.graph()
    assert PRUNE_GRAPH[1:1 + len(graph)] == list(graph)
    assert [n for n in graph if n != pipeline.REPRESENTATION] == list(names)
    assert graph.index(pipeline.REPRESENTATION) == names.index("exact_deduplicated") + 1
    assert REMOVAL_FLOORS == {"validated": 0.5, "properties_checked": 0.2, "exact_deduplicated": 0.5,
                              "near_deduplicated": 0.5, "outliers_removed": 0.2, "label_noise_removed": 0.5}
    groups = {a.key.to_user_string(): a.group_names_by_key[a.key] for a in defs.assets or ()}
    assert {s.asset: s.stage for s in pipeline.PIPELINE} == {n: groups[n] for n in names}
    assert [s.asset for s in pipeline.PIPELINE if s.incremental] == list(names[:-1])
    assert all(s.score_meaning for s in pipeline.PIPELINE)
    with pytest.raises(KeyError, match="not a pruning step"):
        pipeline.step("trained_model")


@pytest.mark.parametrize("step", STEPS_WITH_PARAMS, ids=lambda s: s.asset)
def test_each_step_declares_typed_described_settings_with_the_old_defaults(step):
    fields = step.params.model_fields
    # properties_checked is off by default: it flags one clean sklearn digit (image_properties.PropertyStepParams)
    assert fields["enabled"].annotation is bool and fields["enabled"].default is (step.asset != "properties_checked")
    assert all(f.description for f in fields.values()), [k for k, f in fields.items() if not f.description]
    for name, f in fields.items():  # a fixed choice is a Literal, never a bare str
        assert f.annotation is not str or name == "overrides", name
    defaults = step.params().model_dump()
    assert {k: defaults[k] for k in OLD_DEFAULTS[step.asset]} == OLD_DEFAULTS[step.asset]
    config = config_class(step.asset)
    assert issubclass(config, dg.Config) and config().model_dump() == defaults
    assert to_params(config(), step.params) == step.params()


def test_choices_and_bounds_are_refused():
    assert set(typing.get_args(LabelNoiseParams.model_fields["filter_by"].annotation)) == set(FILTERS)
    LabelNoiseParams(filter_by="prune_by_class+recheck")
    with pytest.raises(ValidationError, match="filter_by"):
        LabelNoiseParams(filter_by="prune_by_klass")
    with pytest.raises(ValidationError, match="contamination"):
        OutlierParams(contamination=0.5)
    with pytest.raises(ValidationError, match="unknown|extra"):
        OutlierParams(z_treshold=3.0)


def test_a_selection_records_typed_steps():
    sel = Selection(kept_ids=np.array(["a", "b", "c"], dtype=object), test_ids=np.array([], dtype=object),
                    n_train_split=3)
    sel = sel.advance("outliers_removed", StepResult(removed=removed_frame(["b"], "outlier_knn", 5.0)),
                      {"enabled": True}, 0.25)
    record = sel.record("outliers_removed")
    assert record == StepRecord(step="outliers_removed", config={"enabled": True}, n_in=3, n_out=2,
                                removed_by_reason={"outlier_knn": 1}, seconds=0.25)
    assert sel.record("validated") is None
    with pytest.raises(AttributeError):
        record.n_out = 3  # frozen
    assert not hasattr(StepResult(removed=removed_frame()), "scores")


def test_supply_refuses_a_function_without_a_mapper_parameter():
    from prune_dagster.core.infra.parallel import serial_map
    from prune_dagster.defs.engine import ComputeEngine

    engine = ComputeEngine(address="in-process")

    def renamed(items, map_fn=serial_map):
        return map_fn(len, items)

    def good(items, mapper=serial_map, block_rows=8):
        return mapper, block_rows

    with pytest.raises(TypeError, match="renamed has no `mapper` parameter"):
        engine.supply(renamed)
    assert engine.supply(good)([]) == (serial_map, 8)
    assert ComputeEngine(address="in-process", block_rows=3).supply(good)([])[1] == 3


def test_every_step_asset_takes_its_declared_params():
    """The Launchpad shows what the pipeline declares: each step asset's config fields and defaults are
    exactly its Params model's (one definition, no copy to drift)."""
    from prune_dagster.definitions import defs

    for entry in pipeline.PIPELINE:
        op_def = defs.resolve_assets_def(entry.asset).op
        fields = op_def.config_schema.as_field().config_type.fields
        declared = entry.params.model_fields
        assert set(fields) == set(declared), entry.asset
        for name, field in declared.items():
            assert fields[name].default_value == field.default, (entry.asset, name)
            assert fields[name].description == field.description, (entry.asset, name)
