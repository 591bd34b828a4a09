"""Class rebalancing with imbalanced-learn samplers, bounded by a maximum class ratio."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.infra.parallel import Mapper, serial_map
from prune_dagster.core.ledger import StepResult, Synthetic, removed_frame
from prune_dagster.core.params import Params
from prune_dagster.core.steps.frozen import NeedsFullPrune, NewBatch, OldRun
from prune_dagster.core.training.class_weights import METHODS, ClassWeightParams, class_weights

SAMPLERS = ("none", "smote", "random_over", "random_under", "near_miss", "tomek", "class_weight")
# Samplers that leave the samples as they are (class_weight: the loss of trained_model weighs classes instead).
UNCHANGED = ("none", "class_weight")
OVER = ("smote", "random_over")
SCORE_MEANING = "none (NaN): an under-sampler's removals carry no score"


class BalanceParams(Params):
    """Class rebalancing with an imbalanced-learn sampler, bounded by a maximum class ratio."""

    enabled: bool = Field(default=True, description="false: the step passes its input through unchanged")
    sampler: Literal[SAMPLERS] = Field(default="smote", description="none | smote | random_over (add samples to "
                                                                    "small classes) | random_under | near_miss | "
                                                                    "tomek (remove samples of large classes) | "
                                                                    "class_weight (keep the samples; trained_model "
                                                                    "weighs the loss per class)")
    max_imbalance: float = Field(default=2.0, ge=1.0, le=1e6, description="largest / smallest class size "
                                                                          "allowed before the sampler acts")
    seed: int = Field(default=0, ge=0, description="seed of the sampler")
    class_weight_kind: Literal[METHODS] = Field(default="effective_number",
                                                description="class_weight: inverse_frequency (1 / n_c) or "
                                                            "effective_number ((1 - beta) / (1 - beta^n_c))")
    beta: float = Field(default=0.999, ge=0.0, lt=1.0, description="class_weight with effective_number: 0 = equal "
                                                                    "weights, towards 1 = inverse frequency")


def loss_weights(params: BalanceParams, labels: np.ndarray, n_classes: int) -> np.ndarray | None:
    """Per-class loss weights of the training set when the step chose `class_weight`, else None."""
    if not params.enabled or params.sampler != "class_weight":
        return None
    return class_weights(labels, n_classes, ClassWeightParams(method=params.class_weight_kind, beta=params.beta))


def histogram(labels: np.ndarray, class_names: tuple[str, ...]) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(class_names))
    return {class_names[c]: int(n) for c, n in enumerate(counts)}


def rebalance(ids: np.ndarray, images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
              sampler: str = "smote", max_imbalance: float = 2.0, seed: int = 0) -> StepResult:
    """Bring the largest/smallest class ratio down to `max_imbalance`.

    Over-samplers raise small classes to ceil(n_max / max_imbalance) and return the new samples as
    `Synthetic` (their own ids and pixels; originals are untouched). Under-samplers cut large classes
    to floor(n_min × max_imbalance) and report the cut samples. `tomek` removes majority members of
    Tomek links whatever the ratio. Data already within the ratio is left as it is.
    """
    from imblearn.over_sampling import SMOTE, RandomOverSampler
    from imblearn.under_sampling import NearMiss, RandomUnderSampler, TomekLinks

    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler={sampler!r}; expected one of {SAMPLERS}")
    if max_imbalance < 1.0:
        raise ConfigError(f"max_imbalance={max_imbalance}; expected a ratio >= 1")
    before = histogram(labels, class_names)
    meta: dict = {"histogram_before": before, "sampler": sampler}
    present, counts = np.unique(labels, return_counts=True)
    ratio = counts.max() / counts.min()
    meta["imbalance_before"] = round(float(ratio), 3)
    x = images.reshape(len(images), -1)
    ids = np.asarray(ids, dtype=object)

    if sampler in UNCHANGED or (sampler != "tomek" and ratio <= max_imbalance):
        return StepResult(removed=removed_frame(), metadata={**meta, "histogram_after": before})

    if sampler in OVER:
        target = math.ceil(counts.max() / max_imbalance)
        strategy = {int(c): target for c, n in zip(present, counts, strict=True) if n < target}
        smallest = min(counts[np.isin(present, list(strategy))])
        if sampler == "smote" and smallest >= 2:
            obj = SMOTE(sampling_strategy=strategy, k_neighbors=min(5, smallest - 1), random_state=seed)
        else:  # SMOTE needs two samples of a class to interpolate between
            meta["fallback"] = "random_over" if sampler == "smote" else None
            obj = RandomOverSampler(sampling_strategy=strategy, random_state=seed)
        x_res, y_res = obj.fit_resample(x, labels)
        new_x, new_y = x_res[len(x):], y_res[len(x):]
        syn_ids = np.array([f"synthetic/{sampler}/{i:06d}" for i in range(len(new_y))], dtype=object)
        synthetic = Synthetic(ids=syn_ids, images=new_x.reshape(-1, *images.shape[1:]).astype(np.float32),
                              labels=new_y.astype(np.int64), step="class_balanced")
        after = histogram(np.concatenate([labels, new_y]), class_names)
        return StepResult(removed=removed_frame(), synthetic=synthetic,
                          metadata={**meta, "histogram_after": after, "n_synthetic": int(len(new_y))})

    if sampler == "tomek":
        obj = TomekLinks()
    else:
        target = math.floor(counts.min() * max_imbalance)
        strategy = {int(c): target for c, n in zip(present, counts, strict=True) if n > target}
        if sampler == "random_under":
            obj = RandomUnderSampler(sampling_strategy=strategy, random_state=seed)
        else:  # NearMiss needs as many neighbours as the smallest class has samples
            obj = NearMiss(sampling_strategy=strategy, n_neighbors=max(1, min(3, int(counts.min()))))
    obj.fit_resample(x, labels)
    keep = np.zeros(len(x), dtype=bool)
    keep[obj.sample_indices_] = True
    removed = removed_frame(ids[~keep], f"rebalance_{sampler}", np.nan)
    return StepResult(removed=removed, metadata={**meta, "histogram_after": histogram(labels[keep], class_names)})


@dataclass
class BalanceIndex:
    """What the incremental index keeps: the class counts the old step saw, and whether it synthesised."""

    class_counts: np.ndarray
    had_synthetic: bool


def freeze(old: OldRun, params: BalanceParams, mapper: Mapper = serial_map) -> BalanceIndex:
    counts = np.bincount(old.dataset.labels[old.input_positions()], minlength=old.dataset.n_classes)
    synthetic = old.selection.synthetic
    return BalanceIndex(class_counts=counts, had_synthetic=synthetic is not None and len(synthetic.ids) > 0)


def decide(frozen: BalanceIndex, params: BalanceParams, batch: NewBatch, mapper: Mapper = serial_map) -> None:
    """Removes nothing; needs a full prune when the sampler would act differently with the new samples."""
    if params.sampler in UNCHANGED:
        return
    counts = frozen.class_counts + np.bincount(batch.labels[batch.alive], minlength=len(frozen.class_counts))
    present = counts[counts > 0]
    if frozen.had_synthetic or present.max() / present.min() > params.max_imbalance:
        raise NeedsFullPrune("class rebalancing would change (the class ratio passes max_imbalance, or the last "
                             "prune synthesised samples)")
