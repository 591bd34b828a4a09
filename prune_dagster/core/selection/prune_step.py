"""The score step as one pure function: which scores rank the cleaned set, and what is removed.

EL2N comes from the shared representation's fold runs when it has them (`scores_from:
representation`), else from the step's own short runs; `semdedup` selects on the representation's
embeddings; every other strategy computes its own scores. The Dagster asset only calls `prune_step`.
"""

from __future__ import annotations

import numpy as np

from prune_dagster.core.ledger import StepResult, removed_frame
from prune_dagster.core.selection.scoring import prune_to_fraction, select_from_scores
from prune_dagster.core.selection.semdedup import semdedup_prune
from prune_dagster.core.selection.strategies import PruneParams
from prune_dagster.core.training.shared import SharedRepresentation


def removed_beyond(ids: np.ndarray, kept: np.ndarray, reason: str, scores: np.ndarray):
    """Ledger rows of every sample not at a `kept` position, with its score."""
    out = np.ones(len(ids), dtype=bool)
    out[kept] = False
    return removed_frame(ids[out], reason, scores[out])


def prune_step(params: PruneParams, ids: np.ndarray, images: np.ndarray, labels: np.ndarray, n_classes: int,
               feature_mask: np.ndarray | None = None,
               representation: SharedRepresentation | None = None) -> StepResult:
    """Keep `params.retained_fraction` of (ids, images, labels) by `params.strategy`."""
    if params.strategy == "semdedup":
        return semdedup_step(params, representation, ids, labels)
    shared = shared_el2n(params, representation, ids)
    if shared is not None:  # the fold runs' EL2N: ranked like the step's own, nothing trained here
        scores = shared
        kept = select_from_scores(params.strategy, scores, labels, n_classes, params.retained_fraction,
                                  params.seed, params)
    else:  # prune_to_fraction has no `mapper`: scoring runs in this process, not through the engine
        kept, scores = prune_to_fraction(params.strategy, images, labels, n_classes, params.retained_fraction,
                                         params.seed, params, feature_mask)
    removed = removed_beyond(ids, kept, f"{params.strategy}_below_cutoff", scores)
    return StepResult(removed=removed, metadata={
        "strategy": params.strategy, "target_fraction": params.retained_fraction,
        "scores_from": "representation" if shared is not None else "own_runs"})


def semdedup_step(params: PruneParams, representation: SharedRepresentation | None, ids: np.ndarray,
                  labels: np.ndarray) -> StepResult:
    """Semantic deduplication on the representation's embeddings: the kept positions it chooses, and
    each dropped sample's cosine similarity to a kept member of its cluster as its ledger score."""
    embeddings = None if representation is None else representation.embeddings_of(ids)
    result = semdedup_prune(embeddings, labels, params)
    removed = removed_beyond(ids, result.kept, "semantic_duplicate", result.scores)
    return StepResult(removed=removed, metadata={"strategy": "semdedup", "target_fraction": params.retained_fraction,
                                                 "scores_from": "representation", **result.metadata()})


def shared_el2n(params: PruneParams, representation: SharedRepresentation | None, ids: np.ndarray):
    """The representation's EL2N of `ids` when the step should use it, else None."""
    if params.strategy != "el2n" or params.scores_from != "representation" or representation is None:
        return None
    return representation.el2n_of(ids)
