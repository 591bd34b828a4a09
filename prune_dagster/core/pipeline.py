"""The pruning steps, in order: the one list that the graph, its checks, the summary, the incremental
index and the docs' step table are built from.

Each entry names the asset, its stage (the asset group), the step's core module (`core/steps/`, see
`core/steps/base.py` for what a module offers), the most it may remove before the run stops
(`removal_floor`, a blocking check) and whether it reads the shared representation. Adding a step is
one module, one entry here, and its tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from prune_dagster.core.ledger import StepResult, removed_frame
from prune_dagster.core.params import Params
from prune_dagster.core.steps import (
    balance,
    dedup,
    features,
    image_properties,
    label_noise,
    near_dup,
    outliers,
    prune,
    validate,
)
from prune_dagster.core.steps.base import Invariant, StepInputs


@dataclass(frozen=True)
class Step:
    """One pruning step of the graph (its module's declarations, read once by `Step.of`)."""

    asset: str
    stage: str
    params: type[Params]  # the step's settings; its Dagster Config is made from this model
    run: Callable[[Any, StepInputs], StepResult]
    removal_floor: float | None  # the largest share of its input it may remove; None: unchecked
    score_meaning: str  # what the ledger's `score` is for this step's rows
    description: str  # the asset's description
    removes: str  # what it removes, in a few words (the docs' step table)
    key_settings: tuple[str, ...] = ()  # the settings the docs' step table shows with their defaults
    uses_representation: bool = False  # the asset reads the shared representation
    decide: Callable[..., None] | None = None  # (state, params, NewBatch, mapper): drop new samples
    freeze: Callable[..., Any] | None = None  # (state, OldRun) -> what `decide` reads; cheap, nothing recomputed
    disabled: Callable[[Any, StepInputs], StepResult] | None = None  # what `enabled: false` still does
    invariants: tuple[Invariant, ...] = ()

    @classmethod
    def of(cls, asset: str, stage: str, module: ModuleType, removal_floor: float | None = None,
           uses_representation: bool = False) -> Step:
        """The entry of a step module (its PARAMS, run, SCORE_MEANING, DESCRIPTION, REMOVES, KEY_SETTINGS and
        optional decide, freeze, disabled, INVARIANTS)."""
        return cls(asset=asset, stage=stage, params=module.PARAMS, run=module.run, removal_floor=removal_floor,
                   score_meaning=module.SCORE_MEANING, description=module.DESCRIPTION, removes=module.REMOVES,
                   key_settings=tuple(getattr(module, "KEY_SETTINGS", ())), uses_representation=uses_representation,
                   decide=getattr(module, "decide", None), freeze=getattr(module, "freeze", None),
                   disabled=getattr(module, "disabled", None), invariants=tuple(getattr(module, "INVARIANTS", ())))

    @property
    def incremental(self) -> bool:
        return self.decide is not None

    def execute(self, params: Params, inputs: StepInputs) -> StepResult:
        """`run`, or, when the step is switched off, what it still does (nothing, by default)."""
        params = params.for_kind(inputs.kind)
        if getattr(params, "enabled", True):
            return self.run(params, inputs)
        if self.disabled is not None:
            return self.disabled(params, inputs)
        return StepResult(removed=removed_frame(), metadata={"skipped": "disabled"})


PIPELINE: tuple[Step, ...] = (
    Step.of("validated", "ingest", validate, 0.5),
    Step.of("properties_checked", "cleaning", image_properties, 0.2),
    Step.of("exact_deduplicated", "cleaning", dedup, 0.5),
    Step.of("near_deduplicated", "cleaning", near_dup, 0.5, uses_representation=True),
    Step.of("outliers_removed", "cleaning", outliers, 0.2, uses_representation=True),
    Step.of("label_noise_removed", "cleaning", label_noise, 0.5, uses_representation=True),
    Step.of("class_balanced", "shaping", balance),
    Step.of("features_selected", "shaping", features),
    # Score-based pruning ranks the whole set: new samples are kept and re-ranked at the next full prune.
    Step.of("pruned_dataset", "selection", prune, uses_representation=True),
)

# The shared representation is computed once after this step, before the steps that compare samples;
# it removes nothing, so it is an asset of the graph but not a pruning step.
REPRESENTATION = "representation"
REPRESENTATION_AFTER = "exact_deduplicated"


def names(steps: tuple[Step, ...] = PIPELINE) -> tuple[str, ...]:
    """The steps' asset names, in order."""
    return tuple(s.asset for s in steps)


def step(asset: str, steps: tuple[Step, ...] = PIPELINE) -> Step:
    """The entry of `asset` (KeyError naming the known steps when there is none)."""
    for s in steps:
        if s.asset == asset:
            return s
    raise KeyError(f"{asset!r} is not a pruning step; the steps are {', '.join(names(steps))}")


def score_step(steps: tuple[Step, ...] = PIPELINE) -> str:
    """The last step: score-based pruning, whose output the model trains on."""
    return steps[-1].asset


SCORE_STEP = score_step()


def graph(steps: tuple[Step, ...] = PIPELINE) -> tuple[str, ...]:
    """Every asset from the first step to the score step, in order, the representation included."""
    out: list[str] = []
    for name in names(steps):
        out.append(name)
        if name == REPRESENTATION_AFTER:
            out.append(REPRESENTATION)
    return tuple(out)


def cleaning_graph(steps: tuple[Step, ...] = PIPELINE) -> tuple[str, ...]:
    """The assets of the cleaning chain in order, the representation included (what a full prune
    materializes before the score step)."""
    return tuple(a for a in graph(steps) if a != score_step(steps))


def cleaning_steps(steps: tuple[Step, ...] = PIPELINE) -> tuple[Step, ...]:
    """The steps before the score step (the chain every full prune runs first)."""
    return steps[:-1]
