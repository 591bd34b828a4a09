"""The pruning steps, in order: the one list that the jobs, the removal floors, the summary and the
incremental index read.

Each entry names the asset, its stage (the asset group), its parameter model, the most it may remove
before the run stops (`removal_floor`, a blocking check), what the ledger's `score` column means for
its rows, and, for the steps the incremental index covers, the functions it calls: `freeze` (what
the index keeps for the step) and `decide` (decide new samples against that). Adding a step is one
entry here plus its module in `core/steps/` and its asset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prune_dagster.core.params import Params
from prune_dagster.core.selection.strategies import PruneParams
from prune_dagster.core.steps import (
    balance,
    dedup,
    features,
    image_properties,
    label_noise,
    near_dup,
    outliers,
    validate,
)


@dataclass(frozen=True)
class Step:
    """One pruning step of the graph."""

    asset: str
    stage: str
    params: type[Params]  # the step's settings; its Dagster Config is made from this model
    removal_floor: float | None  # the largest share of its input it may remove; None: unchecked
    score_meaning: str  # what the ledger's `score` is for this step's rows
    freeze: Callable[..., Any] | None = None  # (OldRun, params, mapper) -> what the index keeps
    decide: Callable[..., None] | None = None  # (frozen, params, NewBatch, mapper): drop new samples

    @property
    def incremental(self) -> bool:
        return self.freeze is not None and self.decide is not None


PIPELINE: tuple[Step, ...] = (
    Step("validated", "ingest", validate.ValidateParams, 0.5, validate.SCORE_MEANING,
         validate.freeze, validate.decide),
    Step("properties_checked", "cleaning", image_properties.PropertyStepParams, 0.2, image_properties.SCORE_MEANING,
         image_properties.freeze, image_properties.decide),
    Step("exact_deduplicated", "cleaning", dedup.ExactDedupParams, 0.5, dedup.SCORE_MEANING,
         dedup.freeze, dedup.decide),
    Step("near_deduplicated", "cleaning", near_dup.NearDedupParams, 0.5, near_dup.SCORE_MEANING,
         near_dup.freeze, near_dup.decide),
    Step("outliers_removed", "cleaning", outliers.OutlierParams, 0.2, outliers.SCORE_MEANING,
         outliers.freeze, outliers.decide),
    Step("label_noise_removed", "cleaning", label_noise.LabelNoiseParams, 0.5, label_noise.SCORE_MEANING,
         label_noise.freeze, label_noise.decide),
    Step("class_balanced", "shaping", balance.BalanceParams, None, balance.SCORE_MEANING,
         balance.freeze, balance.decide),
    Step("features_selected", "shaping", features.FeatureParams, None, features.SCORE_MEANING,
         features.freeze, features.decide),
    # Score-based pruning ranks the whole set: new samples are kept and re-ranked at the next full prune.
    Step("pruned_dataset", "selection", PruneParams, None,
         "the strategy's per-sample score (EL2N: mean L2 norm of softmax - one-hot; forgetting: events; "
         "prototype: distance to the nearest centroid; random: a uniform draw; semdedup: largest cosine "
         "similarity to a kept member of its cluster); removed: beyond the cutoff"),
)

SCORE_STEP = "pruned_dataset"
# The shared representation is computed once after this step, before the steps that compare samples;
# it removes nothing, so it is an asset of the graph but not a pruning step.
REPRESENTATION = "representation"
REPRESENTATION_AFTER = "exact_deduplicated"


def names() -> tuple[str, ...]:
    """The steps' asset names, in order."""
    return tuple(s.asset for s in PIPELINE)


def step(asset: str) -> Step:
    """The entry of `asset` (KeyError naming the known steps when there is none)."""
    for s in PIPELINE:
        if s.asset == asset:
            return s
    raise KeyError(f"{asset!r} is not a pruning step; the steps are {', '.join(names())}")


def graph() -> tuple[str, ...]:
    """Every asset from the first step to the score step, in order, the representation included."""
    out: list[str] = []
    for name in names():
        out.append(name)
        if name == REPRESENTATION_AFTER:
            out.append(REPRESENTATION)
    return tuple(out)


def cleaning_graph() -> tuple[str, ...]:
    """The assets of the cleaning chain in order, the representation included (what a full prune
    materializes before the score step)."""
    return tuple(a for a in graph() if a != SCORE_STEP)


def cleaning_steps() -> tuple[Step, ...]:
    """The steps before the score step (the chain every full prune runs first)."""
    return PIPELINE[:names().index(SCORE_STEP)]
