"""The score step: keep `target_fraction` of the cleaned set by a per-sample score.

EL2N comes from the shared representation's fold runs when it has them (`scores_from:
representation`), else from the step's own short runs; `semdedup` selects on the representation's
embeddings; every other strategy computes its own scores. The strategies and their settings live in
`core/selection/` (scoring.py, select.py, semdedup.py, strategies.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.ledger import Selection, StepResult, removed_frame
from prune_dagster.core.selection.scoring import prune_to_fraction, select_from_scores
from prune_dagster.core.selection.semdedup import semdedup_prune
from prune_dagster.core.selection.strategies import PruneParams
from prune_dagster.core.steps.base import Invariant, Outcome, StepInputs
from prune_dagster.core.training.shared import SharedRepresentation

PARAMS = PruneParams
SCORE_MEANING = ("the strategy's per-sample score (EL2N: mean L2 norm of softmax - one-hot; forgetting: events; "
                 "prototype: distance to the nearest centroid; random: a uniform draw; semdedup: largest cosine "
                 "similarity to a kept member of its cluster); removed: beyond the cutoff")
DESCRIPTION = ("Keeps `target_fraction` of the cleaned set by a per-sample score (EL2N by default; random is the "
               "baseline), per class. Writes kept_ids.csv, ledger.csv and the pruned dataset itself (`dataset/`, "
               "in the input's format) for this run.")
REMOVES = "the samples beyond the score's cutoff (score-based pruning to target_fraction)"
KEY_SETTINGS = ("strategy", "target_fraction", "scores_from")


def removed_beyond(ids: np.ndarray, kept: np.ndarray, reason: str, scores: np.ndarray):
    """Ledger rows of every sample not at a `kept` position, with its score."""
    out = np.ones(len(ids), dtype=bool)
    out[kept] = False
    return removed_frame(ids[out], reason, scores[out])


class SampleCount:
    """Stands in for the samples where a strategy only needs their number (random, or scores taken from
    the representation), so a table or texts are not encoded for nothing."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def run(params: PruneParams, inputs: StepInputs) -> StepResult:
    """Keep `params.target_fraction` of the kept samples by `params.strategy`. Score-based pruning ranks
    the whole set: the incremental index keeps new samples (re-ranked at the next full prune). Strategies
    with their own runs train the kind's model (the document's CNN, the table MLP, the text CNN)."""
    own_runs = params.strategy not in ("random", "semdedup") and shared_el2n(
        params, inputs.representation, inputs.ids) is None
    data = inputs.images if inputs.kind == "image" else inputs.encoded if own_runs else SampleCount(len(inputs.ids))
    return prune_step(params, inputs.ids, data, inputs.labels, inputs.dataset.n_classes,
                      inputs.selection.feature_mask, inputs.representation)


def prune_step(params: PruneParams, ids: np.ndarray, images: Any, labels: np.ndarray, n_classes: int,
               feature_mask: np.ndarray | None = None,
               representation: SharedRepresentation | None = None) -> StepResult:
    """Keep `params.target_fraction` of (ids, images, labels) by `params.strategy`."""
    if params.strategy == "semdedup":
        return semdedup_step(params, representation, ids, labels)
    shared = shared_el2n(params, representation, ids)
    if shared is not None:  # the fold runs' EL2N: ranked like the step's own, nothing trained here
        scores = shared
        kept = select_from_scores(params.strategy, scores, labels, n_classes, params.target_fraction,
                                  params.seed, params)
    else:  # prune_to_fraction has no `mapper`: scoring runs in this process, not through the engine
        kept, scores = prune_to_fraction(params.strategy, images, labels, n_classes, params.target_fraction,
                                         params.seed, params, feature_mask)
    removed = removed_beyond(ids, kept, f"{params.strategy}_below_cutoff", scores)
    return StepResult(removed=removed, metadata={
        "strategy": params.strategy, "target_fraction": params.target_fraction,
        "scores_from": "representation" if shared is not None else "own_runs",
        "sample_passes": 0 if shared is not None else own_run_passes(params, len(ids))})


def own_run_passes(params: PruneParams, n: int) -> int:
    """Training passes of the strategy's own scoring runs (seeds x epochs x the rows each run fits on)."""
    fit = min(n, params.fit_sample) if params.fit_sample else n
    runs = {"el2n": params.score_seeds, "ccs": params.score_seeds, "forgetting": params.score_seeds,
            "prototype_easy": int(params.prototype_embedding == "cnn"),
            "prototype_hard": int(params.prototype_embedding == "cnn")}.get(params.strategy, 0)
    return runs * params.score_epochs * fit


def semdedup_step(params: PruneParams, representation: SharedRepresentation | None, ids: np.ndarray,
                  labels: np.ndarray) -> StepResult:
    """Semantic deduplication on the representation's embeddings: the kept positions it chooses, and
    each dropped sample's cosine similarity to a kept member of its cluster as its ledger score."""
    embeddings = None if representation is None else representation.embeddings_of(ids)
    result = semdedup_prune(embeddings, labels, params)
    removed = removed_beyond(ids, result.kept, "semantic_duplicate", result.scores)
    return StepResult(removed=removed, metadata={"strategy": "semdedup", "target_fraction": params.target_fraction,
                                                 "scores_from": "representation", **result.metadata()})


def shared_el2n(params: PruneParams, representation: SharedRepresentation | None, ids: np.ndarray):
    """The representation's EL2N of `ids` when the step should use it, else None."""
    if params.strategy != "el2n" or params.scores_from != "representation" or representation is None:
        return None
    return representation.el2n_of(ids)


def _no_test_sample(dataset: Dataset, selection: Selection) -> Outcome:
    leaked = np.intersect1d(selection.kept_ids.astype(str), selection.test_ids.astype(str))
    return Outcome(len(leaked) == 0, {"leaked": len(leaked)})


def _every_class_kept(dataset: Dataset, selection: Selection) -> Outcome:
    counts = np.bincount(dataset.labels[dataset.index_of(selection.kept_ids)], minlength=dataset.n_classes)
    train_counts = np.bincount(dataset.labels[dataset.split == "train"], minlength=dataset.n_classes)
    lost = [dataset.class_names[c] for c in np.flatnonzero((train_counts > 0) & (counts == 0))]
    ratio = float(counts[counts > 0].max() / counts[counts > 0].min()) if (counts > 0).any() else float("nan")
    return Outcome(not lost, {"classes_lost": lost, "class_ratio": round(ratio, 3)})


INVARIANTS = (
    Invariant("no_test_sample_in_training", "no test-set sample in the training data", _no_test_sample),
    Invariant("every_class_kept", "every class keeps at least one sample", _every_class_kept, blocking=False),
)
