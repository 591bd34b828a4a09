"""Semantic deduplication (SemDeDup, Abbas et al. 2023; NeMo Curator) as a selection to a retained fraction.

1. L2-normalise the embeddings (cosine similarity = dot product) and cluster them with k-means.
2. In each cluster, order the members by distance to the centroid (`keep_first`: nearest first by
   default) and walk that order: a member is kept unless its cosine similarity to a member already
   kept exceeds 1 - ε; otherwise it is dropped as a semantic duplicate of that kept member.
3. ε is found by bisection so that the kept count reaches round(fraction x n); what bisection cannot
   hit exactly (a step in the count) is settled by score: the kept members most similar to another
   kept one are dropped, or the dropped ones least similar to a kept one are taken back.

Score of a sample: its largest cosine similarity to a kept member of its cluster other than itself
(-1 in a cluster of one). At the chosen ε every kept sample scores <= 1 - ε < every dropped one, so
"keep the lowest scores" reproduces the selection.

Differences from the reference code: SemDeDup drops a member whose similarity to *any* earlier member
exceeds the threshold (a one-pass rule); here only kept members count, so a chain a~b~c with a and c
apart keeps a and c (greedy deduplication, what "keep one of each duplicate group" means). The
reference keeps the member farthest from the centroid ("hard") by default; `keep_first` chooses.

Scale: only members of one cluster are compared (a cluster of m costs an m x m float32 matrix), and
k-means is fitted on at most `fit_rows` samples then assigns all. With the automatic cluster count
(n / `cluster_size`) the work grows like n x cluster_size, not n². `prepare` clusters once and
`select(index, fraction)` reaches each fraction of a sweep from it. The method assumes a semantic
embedding (the representation's CNN features); in pixel space "similar" means similar pixels, which
for small centred images (digits) is close to the same thing and for photos is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field
from sklearn.cluster import KMeans

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.params import Params
from prune_dagster.core.selection.strategies import PruneParams, ScoreParams

# Bisection steps on ε in [0, 2] (it stops once the count is hit): 2 x 2^-30 is below float32 rounding.
_BISECTION_STEPS = 30


class SemDedupParams(Params):
    """Semantic deduplication: k-means on the embedding, then drop near-identical members of a cluster."""

    n_clusters: int = Field(default=0, ge=0, le=100_000,
                            description="k-means clusters (per class with per_class); 0 = automatic: "
                                        "ceil(n / cluster_size)")
    cluster_size: int = Field(default=100, ge=2, le=100_000,
                              description="automatic cluster count: about this many samples per cluster")
    keep_first: Literal["nearest", "farthest"] = Field(default="nearest",
                                                       description="which member of a duplicate group is kept: "
                                                                   "nearest to or farthest from the centroid")
    per_class: bool = Field(default=True, description="deduplicate each class on its own with budget "
                                                      "round(fraction x n_c), so no class is dropped")
    fit_rows: int = Field(default=50_000, ge=100, description="k-means is fitted on at most this many samples "
                                                              "(seeded) and then assigns every sample")
    seed: int = Field(default=0, ge=0, description="seeds k-means and its fitting sample")


@dataclass
class SemDedupResult:
    """Kept positions (ascending), a score per sample (higher = more redundant), and per group the ε
    bisection found and how many the final count adjustment moved."""

    kept: np.ndarray
    scores: np.ndarray
    epsilon: list[float] = field(default_factory=list)
    adjusted: int = 0
    clusters: int = 0

    def metadata(self) -> dict[str, Any]:
        eps = np.asarray(self.epsilon, dtype=float)
        return {"kept": int(len(self.kept)), "clusters": self.clusters, "count_adjusted": self.adjusted,
                "epsilon_median": round(float(np.median(eps)), 5) if len(eps) else None,
                "epsilon_range": [round(float(eps.min()), 5), round(float(eps.max()), 5)] if len(eps) else None}


def normalise(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); an all-zero row stays zero."""
    x = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def cluster(x: np.ndarray, n_clusters: int, fit_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, centroids) of k-means fitted on at most `fit_rows` seeded rows, assigning all rows."""
    k = max(1, min(n_clusters, len(x)))
    fit = x if len(x) <= fit_rows else x[np.random.default_rng([seed, 5]).choice(len(x), fit_rows, replace=False)]
    km = KMeans(n_clusters=min(k, len(fit)), n_init=1, random_state=seed).fit(fit)
    return km.predict(x), km.cluster_centers_


def _keep_order(x: np.ndarray, members: np.ndarray, centroid: np.ndarray, keep_first: str) -> np.ndarray:
    """Members sorted by cosine similarity to their centroid (nearest first, or farthest first)."""
    c = centroid / (np.linalg.norm(centroid) or 1.0)
    sim = x[members] @ c
    return members[np.argsort(-sim if keep_first == "nearest" else sim, kind="stable")]


def greedy_keep(sim: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean keep mask for members in walk order, given their pairwise similarity matrix: a member is
    kept unless its similarity to an earlier kept member exceeds `threshold`."""
    m = len(sim)
    alive, keep = np.ones(m, dtype=bool), np.zeros(m, dtype=bool)
    for i in range(m):
        if alive[i]:
            keep[i] = True
            alive[i + 1:] &= sim[i, i + 1:] <= threshold
    return keep


def _kept_count(sims: list[np.ndarray], threshold: float) -> int:
    return sum(int(greedy_keep(s, threshold).sum()) for s in sims)


def find_epsilon(sims: list[np.ndarray], target: int) -> float:
    """The largest ε in [0, 2] whose kept count is >= target (bisection; the count falls as ε grows,
    up to greedy order effects, which the final adjustment absorbs)."""
    lo, hi = 0.0, 2.0  # kept(lo) = all; kept(hi) = one per cluster
    if _kept_count(sims, 1.0 - hi) >= target:
        return hi
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        count = _kept_count(sims, 1.0 - mid)
        if count == target:
            return mid
        lo, hi = (mid, hi) if count > target else (lo, mid)
    return lo


def _scores(sim: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Each member's largest similarity to a kept member other than itself (-1 when there is none)."""
    s = sim[:, keep].copy()
    s[np.flatnonzero(keep), np.arange(int(keep.sum()))] = -np.inf  # self-similarity of kept members
    return np.maximum(s.max(axis=1, initial=-np.inf), -1.0)


def _adjust(kept: np.ndarray, scores: np.ndarray, target: int) -> tuple[np.ndarray, int]:
    """Move the fewest samples by score so that exactly `target` are kept."""
    diff = int(kept.sum()) - target
    if diff > 0:  # drop the kept samples most similar to another kept one
        idx = np.flatnonzero(kept)
        kept[idx[np.argsort(-scores[idx], kind="stable")[:diff]]] = False
    elif diff < 0:  # take back the dropped samples least similar to a kept one
        idx = np.flatnonzero(~kept)
        kept[idx[np.argsort(scores[idx], kind="stable")[:-diff]]] = True
    return kept, abs(diff)


@dataclass
class GroupIndex:
    """One group's clusters (a class with per_class, else everything): for each cluster, the group
    positions of its members in walk order and their pairwise cosine similarities."""

    rows: np.ndarray
    orders: list[np.ndarray]
    sims: list[np.ndarray]


def _index_group(x: np.ndarray, rows: np.ndarray, params: SemDedupParams) -> GroupIndex:
    k = params.n_clusters or -(-len(rows) // params.cluster_size)
    labels, centroids = cluster(x, k, params.fit_rows, params.seed)
    orders = [_keep_order(x, np.flatnonzero(labels == c), centroids[c], params.keep_first)
              for c in range(len(centroids)) if (labels == c).any()]
    return GroupIndex(rows=rows, orders=orders, sims=[x[o] @ x[o].T for o in orders])


def prepare(embeddings: np.ndarray, labels: np.ndarray | None = None,
            params: SemDedupParams | None = None) -> list[GroupIndex]:
    """Cluster once (per class with `per_class` and labels); `select` then reaches any fraction, so a
    sweep over fractions pays for k-means and the similarity matrices once."""
    params = params or SemDedupParams()
    if np.ndim(embeddings) != 2:
        raise ConfigError(f"embeddings have shape {np.shape(embeddings)}; expected (N, D)")
    x = normalise(embeddings)
    groups = [np.arange(len(x))]
    if params.per_class and labels is not None:
        labels = np.asarray(labels)
        if len(labels) != len(x):
            raise ConfigError(f"{len(labels)} labels for {len(x)} embeddings; expected one label per sample")
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    return [_index_group(x[rows], rows, params) for rows in groups]


def select(index: list[GroupIndex], fraction: float) -> SemDedupResult:
    """Keep round(fraction x n_g) of every group, dropping semantic duplicates first."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"target_fraction={fraction}; expected a share in (0, 1]")
    n = sum(len(g.rows) for g in index)
    result = SemDedupResult(kept=np.zeros(0, dtype=np.int64), scores=np.full(n, -1.0))
    keep = np.zeros(n, dtype=bool)
    for group in index:
        target = max(1, min(len(group.rows), round(fraction * len(group.rows))))
        eps = find_epsilon(group.sims, target)
        mask, scores = np.zeros(len(group.rows), dtype=bool), np.empty(len(group.rows))
        for order, sim in zip(group.orders, group.sims, strict=True):
            kept = greedy_keep(sim, 1.0 - eps)
            mask[order], scores[order] = kept, _scores(sim, kept)
        mask, moved = _adjust(mask, scores, target)
        keep[group.rows], result.scores[group.rows] = mask, scores
        result.epsilon.append(eps)
        result.adjusted += moved
        result.clusters += len(group.orders)
    result.kept = np.flatnonzero(keep).astype(np.int64)
    return result


def semdedup_select(embeddings: np.ndarray, fraction: float, labels: np.ndarray | None = None,
                    params: SemDedupParams | None = None) -> SemDedupResult:
    """Keep round(fraction x n) samples (per class with `per_class` and labels), dropping semantic
    duplicates first. Positions index `embeddings`; the caller maps them to ids."""
    if not 0.0 < fraction <= 1.0:  # before the clustering, which costs the most
        raise ConfigError(f"target_fraction={fraction}; expected a share in (0, 1]")
    return select(prepare(embeddings, labels, params), fraction)


def settings_from(scoring: ScoreParams, n: int) -> SemDedupParams:
    """The clustering settings the score step's own settings imply (pruned_dataset's and the sweep's
    semdedup): n_clusters (0 = automatic), per_class, seed, and fit_sample (0 = fit on all n)."""
    return SemDedupParams(n_clusters=scoring.n_clusters, per_class=scoring.per_class, seed=scoring.seed,
                          fit_rows=max(100, scoring.fit_sample or n))


def semdedup_prune(embeddings: np.ndarray | None, labels: np.ndarray, prune: PruneParams) -> SemDedupResult:
    """pruned_dataset's `strategy: semdedup`: keep `target_fraction` of the rows of `embeddings` (the
    shared representation's, for the step's input in order), reading the clustering settings from the
    step's own: n_clusters (0 = automatic), per_class, seed, fit_sample (0 = fit on all)."""
    if embeddings is None:
        raise ConfigError("pruned_dataset.strategy=semdedup needs embeddings, and representation.features='pixels' "
                          "has none: set representation.features to 'learned' or 'provided'")
    return semdedup_select(embeddings, prune.target_fraction, labels, settings_from(prune, len(embeddings)))
