"""The near-duplicate step on texts and tables (its module, core/steps/near_dup.py, dispatches here):
pairs from the kind's own search, groups by union-find, the first member of each group kept, and the
state incremental pruning decides new samples against.

- texts: MinHash LSH on shingles, each candidate pair confirmed by its exact Jaccard (text_near.py); the
  ledger score is 1 - that Jaccard similarity to the kept text;
- tables: rows whose categories agree and every number lies within a relative tolerance
  (table_neighbors.py); the score is the largest relative difference to the kept row, in tolerances.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from prune_dagster.core.embedding.groups import merge_new, pair_result
from prune_dagster.core.infra.parallel import Mapper, serial_map
from prune_dagster.core.kinds import table_neighbors, text_near
from prune_dagster.core.kinds.table_space import canonical_numbers, split_columns
from prune_dagster.core.ledger import StepResult
from prune_dagster.core.steps.frozen import NewBatch


@dataclass
class GroupState:
    """What the index keeps of the old step input: its groups, each group's survivor and its label, and
    the kind's index of the old samples (a TextNearIndex, or the old table rows)."""

    index: Any  # texts: their TextNearIndex; tables: the old rows (looked up from `positions` by `freeze`)
    comp: np.ndarray
    survivor: np.ndarray
    comp_label: np.ndarray
    positions: np.ndarray | None = None  # tables: dataset rows of the old step input


def text_groups(ids: np.ndarray, texts: np.ndarray, labels: np.ndarray, threshold: float, num_perm: int,
                seed: int, mapper: Mapper = serial_map) -> tuple[StepResult, GroupState]:
    """Near-duplicate texts: pairs at exact Jaccard >= threshold (their MinHash sketch computed once and
    kept as the index of incremental pruning)."""
    texts = text_near.check_texts(texts)
    shingle = text_near.DEFAULT_SHINGLE
    bands, rows = text_near.lsh_bands(threshold, num_perm)
    keys, sets = text_near.sketch(texts, shingle, num_perm, seed, bands, rows, mapper)
    codes = text_near.candidate_pairs(keys, sets.sizes())
    i, j = codes >> 32, codes & 0xFFFFFFFF
    jac = text_near.exact_jaccard(sets, i, sets, j)
    keep = jac >= threshold
    meta = {"shingle": shingle, "jaccard_threshold": threshold, "candidate_pairs": int(len(codes)),
            "pairs_rejected_by_exact_jaccard": int((~keep).sum())}
    result, comp, survivor = pair_result(ids, labels, i[keep], j[keep], 1.0 - jac[keep], meta)
    index = text_near.TextNearIndex.from_sketch(keys, sets, threshold, num_perm, seed, shingle, bands, rows)
    return result, GroupState(index, comp, survivor, np.asarray(labels)[survivor])


def table_groups(ids: np.ndarray, frame: pd.DataFrame, labels: np.ndarray, tolerance: float, positions: np.ndarray,
                 mapper: Mapper = serial_map) -> tuple[StepResult, GroupState]:
    """Near-duplicate rows: equal categories, every number within `tolerance` (relative, log-scaled)."""
    i, j, meta = table_neighbors.near_duplicate_pairs(frame, tolerance, mapper)
    numeric, _ = split_columns(frame)
    coords, _ = table_neighbors.log_scaled(canonical_numbers(frame, numeric))
    gap = np.abs(coords[i] - coords[j]).max(axis=1) if coords.shape[1] and len(i) else np.zeros(len(i))
    relative = -np.expm1(-gap)  # the largest |a - b| / max(|a|, |b|) over the numbers of the pair
    result, comp, survivor = pair_result(ids, labels, i, j, relative / max(tolerance, 1e-12),
                                         {"tolerance": tolerance, **meta})
    return result, GroupState(None, comp, survivor, np.asarray(labels)[survivor], positions)


def _drop_merged(state: GroupState, batch: NewBatch, live: np.ndarray, old_comp: np.ndarray, new_of_old: np.ndarray,
                 new_i: np.ndarray, new_j: np.ndarray, score: np.ndarray) -> None:
    m = len(live)
    n_old_comp = int(state.comp.max()) + 1 if len(state.comp) else 0
    has_old, old_group, first_new = merge_new(m, old_comp, new_of_old, new_i, new_j, n_old_comp)
    gone = has_old | (first_new != np.arange(m))
    labels = batch.labels[live]
    ref = np.where(has_old, state.comp_label[old_group] if len(state.comp_label) else labels, labels[first_new])
    reason = np.where(labels == ref, "near_duplicate", "near_duplicate_label_conflict").astype(object)
    batch.drop(live[gone], reason[gone], score[gone])


def decide_texts(state: GroupState, batch: NewBatch, mapper: Mapper = serial_map) -> None:
    """New texts against the old index and each other, as the full step groups them."""
    live = batch.live()
    if not len(live):
        return
    texts = batch.take(live)
    index: text_near.TextNearIndex = state.index
    new_row, old_row, jac_old = index.query(texts, mapper)
    i, j, jac_new, _ = text_near.near_duplicate_pairs(texts, index.threshold, index.num_perm, index.seed, mapper)
    best = pd.Series(np.r_[jac_old, jac_new, jac_new]).groupby(np.r_[new_row, i, j]).max()
    score = 1.0 - best.reindex(np.arange(len(live))).fillna(0.0).to_numpy()
    _drop_merged(state, batch, live, state.comp[old_row], new_row, i, j, score)


def decide_rows(state: GroupState, tolerance: float, batch: NewBatch, mapper: Mapper = serial_map) -> None:
    """New rows against the old ones and each other: pairs over old + new, those touching a new row."""
    live = batch.live()
    if not len(live):
        return
    old: pd.DataFrame = state.index
    both = pd.concat([old, batch.take(live).astype(old.dtypes.to_dict())], ignore_index=True)
    i, j, _ = table_neighbors.near_duplicate_pairs(both, tolerance, mapper)
    n = len(old)
    cross = (i < n) & (j >= n)
    among = i >= n
    score = np.full(len(live), np.nan)
    _drop_merged(state, batch, live, state.comp[i[cross]], j[cross] - n, i[among] - n, j[among] - n, score)
