"""The pruning steps' assets and checks, made from `core/pipeline.py` (Dagster's asset-factory pattern).

For each step the factory makes: its asset (named as the step, in the step's group, with the step's
description; its Config made from the step's Params; its input the previous step in the list, and the
shared representation where the step reads it), its removal-floor check (blocking) and a check per
invariant the step's module declares. The asset's body is the same for every step: build the step's
inputs, call its `run` (what `enabled: false` does otherwise), record the result in the Selection and
attach the metadata every step shows. The score step (the last) also writes the run's pruned dataset.
"""


import time
from typing import Any

import dagster as dg
from threadpoolctl import threadpool_limits

from prune_dagster import settings
from prune_dagster.core import pipeline
from prune_dagster.core.data.dataset import TEST, TRAIN, Dataset
from prune_dagster.core.data.export import export_dataset, write_ledger
from prune_dagster.core.ledger import Selection, StepResult
from prune_dagster.core.params import Params
from prune_dagster.core.steps.base import Invariant, StepInputs
from prune_dagster.defs import cache
from prune_dagster.defs.assets.common import (
    GALLERY_KEYS,
    current_job_name,
    dataset_metadata,
    engine_metadata,
    removed_gallery,
    removed_ledger,
    to_metadata,
)
from prune_dagster.defs.config import dagster_config, to_params
from prune_dagster.defs.engine import ComputeEngine

RAW = "raw_dataset"
_CONFIGS: dict[type[Params], type[dg.Config]] = {}


def step_config(step: pipeline.Step) -> type[dg.Config]:
    """The step's Dagster Config class, made once from its Params (same fields, defaults, bounds)."""
    if step.params not in _CONFIGS:
        _CONFIGS[step.params] = dagster_config(step.params)
    return _CONFIGS[step.params]


def step_inputs(step: pipeline.Step, previous: str | None) -> dict[str, dg.AssetIn]:
    """The asset's inputs, each named after its asset: the dataset, the previous step, the representation."""
    ins = {RAW: dg.AssetIn(RAW)}
    if previous is not None:
        ins[previous] = dg.AssetIn(previous)
    if step.uses_representation:
        ins[pipeline.REPRESENTATION] = dg.AssetIn(pipeline.REPRESENTATION)
    return ins


def start_selection(dataset: Dataset) -> Selection:
    """What the first step sees: the whole training split, the test split as made by raw_dataset."""
    return Selection.start(dataset.ids_in(TRAIN), dataset.ids_in(TEST))


def record(step: pipeline.Step, params: Params, inputs: StepInputs, engine: ComputeEngine) -> dg.Output[Selection]:
    """Run the step on its inputs, advance the Selection and attach the metadata every step shows."""
    tasks_before = engine.tasks_run
    start = time.perf_counter()
    with threadpool_limits(limits=engine.blas_limit()):
        result = step.execute(params, inputs)
    seconds = time.perf_counter() - start
    return step_output(step, params, inputs, result, seconds, engine_metadata(engine, tasks_before))


def step_output(step: pipeline.Step, params: Params, inputs: StepInputs, result: StepResult, seconds: float,
                extra: dict[str, Any] | None = None) -> dg.Output[Selection]:
    """The new Selection with metadata: sizes, removals by reason, seconds, what the scores mean, the
    step's own figures, the dataset, and a gallery and table of what it removed."""
    dataset = inputs.dataset
    gallery_extra = {k: result.metadata.pop(k) for k in GALLERY_KEYS if k in result.metadata}
    new = inputs.selection.advance(step.asset, result, params.model_dump(), seconds)
    rec = new.history[-1]
    metadata = {
        "n_in": rec.n_in, "n_out": rec.n_out, "n_removed": rec.n_in - rec.n_out,
        "removed_by_reason": rec.removed_by_reason, "seconds": rec.seconds,
        "kept_fraction_of_train": round(new.retained_fraction, 4),  # named as in core/selection/fractions.py
        "score_meaning": step.score_meaning,
        **result.metadata, **(extra or {}), **dataset_metadata(dataset, current_job_name()),
    }
    out = to_metadata(metadata)
    out["removed_samples"] = removed_gallery(dataset, new, step.asset, extra=gallery_extra)
    out["removed_ledger"] = removed_ledger(new, step.asset)
    return dg.Output(new, metadata=out)


def step_asset(step: pipeline.Step, previous: str | None, last: bool) -> dg.AssetsDefinition:
    """The asset of one step; `previous` is the step before it (None for the first), `last` marks the
    score step, which also writes the run's kept ids, ledger and pruned dataset. A step whose settings
    and inputs have not changed reuses its earlier value (defs/cache.py)."""
    config_class = step_config(step)
    resources = {"engine", "io_manager", "output_store"} if last else {"engine", "io_manager"}
    ins = step_inputs(step, previous)

    @dg.asset(name=step.asset, group_name=step.stage, ins=ins, description=step.description,
              required_resource_keys=resources, code_version=cache.CODE_VERSION)
    def _step(context: dg.AssetExecutionContext, config: config_class, **upstream: Any) -> dg.Output[Selection]:
        dataset: Dataset = upstream[RAW]
        engine: ComputeEngine = context.resources.engine
        params = to_params(config, step.params).for_kind(dataset.kind)  # sentinels: the kind's values
        inputs = StepInputs(dataset, upstream[previous] if previous is not None else start_selection(dataset),
                            upstream.get(pipeline.REPRESENTATION), engine.mapper(), engine.block_rows,
                            settings.edge_defaults())
        key = cache.asset_key(context, step.asset, [params.model_dump(), inputs.environment], list(ins))
        hit = cache.lookup(context, context.resources.io_manager, step.asset, key)
        if hit is not None:
            value, metadata = hit
        else:
            out = record(step, params, inputs, engine)
            value, metadata = out.value, dict(out.metadata)
            cache.remember(context, context.resources.io_manager, step.asset, key)
        if last:
            folder = context.resources.output_store.run_folder(context.run_id)
            export_dataset(dataset, value, folder / "dataset")
            write_ledger(folder, value, dataset.kind)
            metadata["output_folder"] = dg.MetadataValue.path(str(folder))
        return cache.output(value, metadata, key)

    return _step


def invariant_check(step: pipeline.Step, invariant: Invariant) -> dg.AssetChecksDefinition:
    """An asset check of the step's output; it passes without looking when the step was switched off."""

    spec = dg.AssetCheckSpec(invariant.name, asset=step.asset, blocking=invariant.blocking,
                             description=invariant.description, additional_deps=[RAW])

    # A multi-asset check only to name its inputs freely (the checked asset's name differs per step).
    @dg.multi_asset_check(specs=[spec], name=f"{step.asset}_{invariant.name}",
                          ins={"raw_dataset": dg.AssetIn(RAW), "selection": dg.AssetIn(step.asset)})
    def _check(raw_dataset: Dataset, selection: Selection):
        rec = selection.record(step.asset)
        named = dataset_metadata(raw_dataset)
        if rec is not None and not rec.config.get("enabled", True):
            yield dg.AssetCheckResult(check_name=invariant.name, asset_key=step.asset, passed=True, metadata=named,
                                      description=f"{step.asset} is disabled in this run")
            return
        outcome = invariant.check(raw_dataset, selection)
        yield dg.AssetCheckResult(check_name=invariant.name, asset_key=step.asset, passed=bool(outcome.passed),
                                  metadata={**outcome.metadata, **named}, description=outcome.description)

    return _check


def removal_floor_check(step: str, floor: float) -> dg.AssetChecksDefinition:
    """Reads n_in / n_out from the step's latest materialization metadata (blocking: the run stops)."""

    @dg.asset_check(asset=step, name="removal_within_floor", blocking=True,
                    description=f"{step} removes at most {floor:.0%} of its input")
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        event = context.instance.get_latest_materialization_event(dg.AssetKey(step))
        meta = event.asset_materialization.metadata  # type: ignore[union-attr]
        n_in, n_out = meta["n_in"].value, meta["n_out"].value
        share = (n_in - n_out) / max(n_in, 1)
        named = {k: meta[k].value for k in ("dataset", "dataset_digest", "job_name") if k in meta}
        return dg.AssetCheckResult(
            passed=bool(share <= floor),
            metadata={"removed_share": round(share, 4), "floor": floor, **named},
            description=None if share <= floor else
            f"{step} would remove {share:.1%} of its input (floor {floor:.0%}): check its settings or the data",
        )

    return _check


def pipeline_assets(steps: tuple[pipeline.Step, ...] = pipeline.PIPELINE) -> list[dg.AssetsDefinition]:
    """Every step's asset, each reading the one before it, in the order of `steps`."""
    previous: list[str | None] = [None, *pipeline.names(steps)[:-1]]
    return [step_asset(s, p, last=i == len(steps) - 1) for i, (s, p) in enumerate(zip(steps, previous, strict=True))]


def pipeline_checks(steps: tuple[pipeline.Step, ...] = pipeline.PIPELINE) -> list[dg.AssetChecksDefinition]:
    """Each step's removal-floor check (where it declares a floor) and its invariants' checks."""
    floors = [removal_floor_check(s.asset, s.removal_floor) for s in steps if s.removal_floor is not None]
    return floors + [invariant_check(s, inv) for s in steps for inv in s.invariants]
