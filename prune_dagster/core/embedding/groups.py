"""Duplicate groups from pairs: union-find into groups, one survivor per group, and the incremental merge
of new samples into old groups. Shared by the near-duplicate step for every kind (image views, MinHash
pairs of texts, tolerance pairs of table rows) and by its incremental `decide`."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from prune_dagster.core.ledger import StepResult, removed_frame
from prune_dagster.core.steps.frozen import NeedsFullPrune


def components(n: int, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(component of each of n rows, size of each component) of the graph with edges (i, j)."""
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    n_groups, comp = connected_components(graph, directed=False)
    return comp, np.bincount(comp, minlength=n_groups)


def first_members(comp: np.ndarray) -> np.ndarray:
    """Row of each component's first member (the survivor of `keep: first`)."""
    return pd.Series(np.arange(len(comp))).groupby(comp).min().to_numpy()


def pair_result(ids: np.ndarray, labels: np.ndarray, i: np.ndarray, j: np.ndarray, distance: np.ndarray,
                metadata: dict) -> tuple[StepResult, np.ndarray, np.ndarray]:
    """(result, comp, survivor): every member of a group but its first is removed, `near_duplicate` or
    `near_duplicate_label_conflict`; its score is its distance to the kept member when they pair directly,
    else its smallest distance to another member."""
    comp, sizes = components(len(ids), i, j)
    survivor = first_members(comp)
    members = np.flatnonzero(sizes[comp] > 1)
    gone = members[survivor[comp[members]] != members]
    kept = survivor[comp[gone]]
    labels = np.asarray(labels)
    reasons = np.where(labels[gone] == labels[kept], "near_duplicate", "near_duplicate_label_conflict").astype(object)
    both = pd.DataFrame({"a": np.r_[i, j], "b": np.r_[j, i], "d": np.r_[distance, distance]})
    direct = both.set_index(["a", "b"])["d"]
    smallest = both.groupby("a")["d"].min()
    scores = direct.reindex(pd.MultiIndex.from_arrays([gone, kept])).to_numpy()
    scores = np.where(np.isnan(scores), smallest.reindex(gone).to_numpy(), scores)
    ids = np.asarray(ids, dtype=object)
    removed = removed_frame(ids[gone], reasons, scores)
    meta = {"groups": int((sizes > 1).sum()), "largest_group": int(sizes.max()) if len(sizes) else 0, **metadata,
            # removed id -> the kept id it duplicates (the gallery shows them side by side; not a ledger column)
            "duplicate_of": dict(zip(ids[gone].tolist(), ids[kept].tolist(), strict=True))}
    return StepResult(removed=removed, metadata=meta), comp, survivor


def merge_new(m: int, old_comp: np.ndarray, new_of_old: np.ndarray, new_i: np.ndarray, new_j: np.ndarray,
              n_old_comp: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """New samples 0..m-1 linked to old groups (`old_comp[k]` links new sample `new_of_old[k]`) and to each
    other (new_i, new_j): (has_old, old_group, first_new) per new sample: whether its group holds an old
    group (then it goes, the old survivor stays), which, and the first new member of its group. A new
    sample that joins two old groups needs a full prune (it would remove an old survivor)."""
    rows, cols = np.concatenate([new_i, new_of_old]), np.concatenate([new_j, m + old_comp])
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(m + n_old_comp,) * 2)
    _, comp = connected_components(graph, directed=False)
    old_in = np.unique(old_comp)
    if pd.Series(comp[m + old_in]).duplicated().any():
        raise NeedsFullPrune("a new sample joins two old near-duplicate groups (a full prune would keep only "
                             "one of their survivors)")
    comp_new = comp[:m]
    owner = pd.Series(old_in, index=comp[m + old_in])  # merged component -> the old group in it
    has_old = pd.Index(owner.index).get_indexer(comp_new) >= 0
    old_group = owner.reindex(comp_new).fillna(0).astype(int).to_numpy()
    first_new = pd.Series(np.arange(m)).groupby(comp_new).transform("min").to_numpy()
    return has_old, old_group, first_new
