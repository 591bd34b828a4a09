"""One declaration of the pruning steps: the graph, its checks, the Launchpad config, the incremental
index and the docs' step table are all built from `prune_dagster.core.pipeline`; each step's settings
are one typed Params model. A toy step added to a copy of the pipeline is picked up by all of them."""

import types
import typing
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from pydantic import Field, ValidationError

from prune_dagster.core import pipeline, pipeline_doc
from prune_dagster.core.incremental import PruneIndex
from prune_dagster.core.ledger import Selection, StepRecord, StepResult, removed_frame
from prune_dagster.core.params import Params
from prune_dagster.core.steps.label_noise import FILTERS, LabelNoiseParams
from prune_dagster.core.steps.outliers import OutlierParams
from prune_dagster.defs.assets.steps import step_config
from prune_dagster.defs.config import to_params

ROOT = Path(__file__).resolve().parents[1]
# The Config defaults before the Params models existed (defs/assets/{cleaning,shaping,ingest}.py); features_selected
# method "auto" is "variance" for images, as before (tables and texts came later).
OLD_DEFAULTS = {
    "validated": {"drop_blank": True, "overrides": ""},
    "properties_checked": {"enabled": False, "k": 5.0, "skip": []},  # new step (issue 15): off by default
    "exact_deduplicated": {"enabled": True, "conflict_policy": "drop_all", "check_test_leaks": True},
    "near_deduplicated": {"enabled": True, "threshold": 0.3, "keep": "first", "n_components": 32, "seed": 0},
    "outliers_removed": {"enabled": True, "method": "knn", "contamination": 0.0, "z_threshold": 4.0,
                         "n_components": 64, "seed": 0},
    "label_noise_removed": {"enabled": True, "classifier": "svc", "folds": 5,
                            "filter_by": "predicted_neq_given+recheck", "seed": 0},
    # max_imbalance is a kind default (issue 21): 2 for images as before, 10 for tables and texts
    "class_balanced": {"enabled": True, "sampler": "smote", "max_imbalance": 2.0, "seed": 0},
    "features_selected": {"enabled": True, "method": "auto", "threshold": 0.0, "keep_fraction": 0.75,
                          "measure": True, "seed": 0},
    # target_fraction was 0.8: EL2N at 0.8 lost 0.3 points on real MNIST over 5 seeds (issue 22); now 1.0
    "pruned_dataset": {"enabled": True, "strategy": "el2n", "target_fraction": 1.0, "score_epochs": 5,
                       "score_seeds": 3, "per_class": True, "seed": 0},
}


def deps_of(defs: dg.Definitions, asset: str) -> set[str]:
    return {k.to_user_string() for k in defs.resolve_asset_graph().get(dg.AssetKey(asset)).parent_keys}


def test_the_graph_is_the_pipeline_inputs_floors_and_groups_included():
    from prune_dagster.definitions import defs
    from prune_dagster.defs.jobs import PRUNE_GRAPH

    names = pipeline.names()
    assert names[0] == "validated" and names[-1] == pipeline.SCORE_STEP == "pruned_dataset"
    graph = pipeline.graph()
    assert PRUNE_GRAPH[1:1 + len(graph)] == list(graph)
    assert graph.index(pipeline.REPRESENTATION) == names.index(pipeline.REPRESENTATION_AFTER) + 1
    for previous, step in zip([None, *names[:-1]], pipeline.PIPELINE, strict=True):  # each reads the one before
        expected = {"raw_dataset"} | ({previous} if previous else set()) | (
            {pipeline.REPRESENTATION} if step.uses_representation else set())
        assert deps_of(defs, step.asset) == expected, step.asset
    assert deps_of(defs, pipeline.REPRESENTATION) == {"raw_dataset", pipeline.REPRESENTATION_AFTER}
    checks = {k.to_user_string() for k in defs.resolve_asset_graph().asset_check_keys}
    floors = {s.asset for s in pipeline.PIPELINE if s.removal_floor is not None}
    assert {c.split(":")[0] for c in checks if c.endswith(":removal_within_floor")} == floors
    assert {f"{s.asset}:{i.name}" for s in pipeline.PIPELINE for i in s.invariants} <= checks
    groups = {a.key.to_user_string(): a.group_names_by_key[a.key] for a in defs.assets or ()}
    assert {s.asset: s.stage for s in pipeline.PIPELINE} == {n: groups[n] for n in names}
    assert [s.asset for s in pipeline.PIPELINE if s.incremental] == list(names[:-1])
    assert all(s.score_meaning and s.description and s.removes for s in pipeline.PIPELINE)
    with pytest.raises(KeyError, match="not a pruning step"):
        pipeline.step("trained_model")


@pytest.mark.parametrize("step", list(pipeline.PIPELINE), ids=lambda s: s.asset)
def test_each_step_declares_typed_described_settings_with_the_old_defaults(step):
    fields = step.params.model_fields
    # properties_checked is off by default: it flags one clean sklearn digit (image_properties.PropertyStepParams)
    assert fields["enabled"].annotation is bool and fields["enabled"].default is (step.asset != "properties_checked")
    assert all(f.description for f in fields.values()), [k for k, f in fields.items() if not f.description]
    for name, f in fields.items():  # a fixed choice is a Literal, never a bare str
        assert f.annotation is not str or name == "overrides", name
    defaults = step.params().model_dump()
    on_images = step.params().for_kind("image").model_dump()  # a kind's value replaces a sentinel default
    assert {k: on_images[k] for k in OLD_DEFAULTS[step.asset]} == OLD_DEFAULTS[step.asset]
    config = step_config(step)
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


def test_a_selection_records_typed_steps_and_their_states():
    sel = Selection.start(np.array(["a", "b", "c"], dtype=object), np.array([], dtype=object))
    sel = sel.advance("outliers_removed", StepResult(removed=removed_frame(["b"], "outlier_knn", 5.0),
                                                     state={"kept": 2}), {"enabled": True}, 0.25)
    record = sel.record("outliers_removed")
    assert record == StepRecord(step="outliers_removed", config={"enabled": True}, n_in=3, n_out=2,
                                removed_by_reason={"outlier_knn": 1}, seconds=0.25)
    assert sel.states == {"outliers_removed": {"kept": 2}}
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


def test_the_docs_step_tables_are_the_pipeline():
    for page, column in pipeline_doc.PAGES.items():
        text = (ROOT / page).read_text()
        table = pipeline_doc.step_table(column=column)
        assert pipeline_doc.with_table(text, table) == text, f"{page}: run `make docs` (the step table differs)"
    rows = pipeline_doc.step_table().splitlines()[2:]
    assert [r.split("`")[1] for r in rows] == list(pipeline.graph())  # every step, in order, and nothing else
    changed = pipeline_doc.with_table(f"a\n{pipeline_doc.BEGIN}\nold\n{pipeline_doc.END}\nb", "new")
    assert changed == f"a\n{pipeline_doc.BEGIN}\nnew\n{pipeline_doc.END}\nb"  # the check can fail


# ---------------------------------------------------------------- a toy step, added in one place


class ToyParams(Params):
    """A toy step: removes every sample whose id ends in the digit it is given."""

    enabled: bool = Field(True, description="false: the step passes its input through unchanged")
    digit: int = Field(7, ge=0, le=9, description="remove the samples whose id ends in this digit")


def toy_run(params: ToyParams, inputs) -> StepResult:
    ids = np.asarray(inputs.ids, dtype=object)
    gone = ids[[str(i).endswith(str(params.digit)) for i in ids]]
    return StepResult(removed=removed_frame(gone, "toy_digit", 1.0), metadata={"toy": len(gone)},
                      state={"digit": params.digit})


def toy_decide(state, params, batch, mapper=None) -> None:
    live = batch.live()
    batch.drop(live[[str(i).endswith(str(state["digit"])) for i in batch.ids[live]]], "toy_digit", 1.0)


TOY = types.SimpleNamespace(PARAMS=ToyParams, run=toy_run, decide=toy_decide, SCORE_MEANING="1.0",
                            DESCRIPTION="Removes samples whose id ends in a digit (a test's toy step).",
                            REMOVES="ids ending in `digit`", KEY_SETTINGS=("digit",))


def test_a_toy_step_is_one_module_and_one_entry(prune_env):
    from conftest import FAST_CONFIG

    from prune_dagster.definitions import build_definitions

    names = pipeline.names()
    at = names.index("validated") + 1  # right after validation: new samples meet it before any comparing step
    steps = (*pipeline.PIPELINE[:at], pipeline.Step.of("toy_step", "cleaning", TOY, 0.2), *pipeline.PIPELINE[at:])
    run_config = {"ops": {**FAST_CONFIG, "representation": {"config": {"features": "pixels"}},
                          "toy_step": {"config": {"digit": 3}}}}
    # Definitions resolve inside this test's own instance: one another test left behind cannot leak in.
    with dg.DagsterInstance.get() as instance:
        defs = build_definitions(steps)
        job = defs.resolve_job_def("prune_job")
        assert "toy_step" in {n.name for n in job.graph.nodes}
        assert deps_of(defs, "toy_step") == {"raw_dataset", "validated"}
        assert "toy_step" in deps_of(defs, pipeline.names()[at])  # the next step reads it
        checks = {k.to_user_string() for k in defs.resolve_asset_graph().asset_check_keys}
        assert "toy_step:removal_within_floor" in checks
        ops = job.run_config_schema.config_type.fields["ops"].config_type.fields  # what the Launchpad shows
        toy_fields = ops["toy_step"].config_type.fields["config"].config_type.fields
        assert toy_fields["digit"].description == "remove the samples whose id ends in this digit"
        with pytest.raises(dg.DagsterInvalidConfigError, match="toy_step:config:digit"):
            dg.validate_run_config(job, {"ops": {"toy_step": {"config": {"digit": 12}}}})
        assert "`toy_step` | cleaning | ids ending in `digit`" in pipeline_doc.step_table(steps)
        result = job.execute_in_process(instance=instance, run_config=run_config)
        assert result.success
        dataset = result.output_for_node("raw_dataset")
        selection = result.output_for_node("pruned_dataset")
    ledger = selection.ledger
    toy_rows = ledger[ledger["step"] == "toy_step"]
    assert len(toy_rows) and toy_rows["id"].str.endswith("3").all() and (toy_rows["reason"] == "toy_digit").all()
    assert not any(str(i).endswith("3") for i in selection.kept_ids)
    index = PruneIndex.build(dataset, selection, None, steps)  # the index decides with the toy step too
    assert "toy_step" in index.steps and index.frozen["toy_step"] == {"digit": 3}
    pos = dataset.index_of(dataset.ids_in("train")[:2])
    new_ids = np.array(["new/fresh-0", "new/fresh-3"], dtype=object)
    images = np.clip(dataset.images[pos] + 0.05 * np.random.default_rng(0).random(dataset.images[pos].shape), 0, 1)
    added = index.add(new_ids, images.astype(np.float32), dataset.labels[pos], steps=steps)
    assert dict(zip(added.removed["id"], added.removed["step"], strict=True)).get("new/fresh-3") == "toy_step"
