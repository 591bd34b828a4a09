"""Selection rules: keep `fraction` of a scored set, per class, by rank or by CCS's strata.

Positions index the arrays given in; the caller maps them back to ids. No Dagster here.
"""

from __future__ import annotations

import numpy as np

from prune_dagster.core.errors import DatasetError
from prune_dagster.core.selection.strategies import (
    DEFAULT_SCORING,
    ScoreParams,
    check_config,
    check_fraction,
    check_strategy,
)

# Strategies that keep the lowest scores; every other one keeps the highest, except ccs (strata).
KEEP_LOWEST = frozenset({"prototype_easy"})


def budget(fraction: float, n: int) -> int:
    """round(fraction * n) (Python's round, as `stratified_split` uses), at least 1 for a non-empty group."""
    if n == 0:
        return 0
    return max(1, min(n, round(fraction * n)))


def _groups(labels: np.ndarray, n_classes: int, per_class: bool) -> list[np.ndarray]:
    """The sets of positions that each get their own budget."""
    if not per_class:
        return [np.arange(len(labels))]
    return [m for c in range(n_classes) if len(m := np.flatnonzero(labels == c))]


def _ranked(members: np.ndarray, scores: np.ndarray, rng: np.random.Generator, hardest_first: bool) -> np.ndarray:
    """Members sorted by score; ties in seeded random order rather than by position."""
    shuffled = rng.permutation(members)
    key = -scores[shuffled] if hardest_first else scores[shuffled]
    return shuffled[np.argsort(key, kind="stable")]


def ccs_select(members: np.ndarray, scores: np.ndarray, k: int, beta: float, n_strata: int,
               rng: np.random.Generator) -> np.ndarray:
    """Coverage-centric selection (Zheng et al. 2023) of `k` of `members`.

    Drop the hardest `beta` share (capped so k stay available), cut the remaining score range into
    `n_strata` equal-width strata and visit them from the smallest: each gets min(size, budget left /
    strata left) random members. Small strata are taken whole, so easy, medium and hard regions all
    stay covered even at 90% pruning, where hardest-only selection keeps just the hard tail.
    """
    n = len(members)
    if k >= n:
        return members
    n_drop = min(round(beta * n), n - k)
    pool = _ranked(members, scores, rng, hardest_first=True)[n_drop:]
    s = scores[pool]
    lo, hi = float(s.min()), float(s.max())
    width = (hi - lo) / n_strata
    stratum = np.zeros(len(pool), dtype=np.int64) if width <= 0 else np.minimum(
        ((s - lo) / width).astype(np.int64), n_strata - 1)
    strata = [pool[stratum == b] for b in range(n_strata)]
    strata = sorted((st for st in strata if len(st)), key=len)  # stable: equal sizes stay in score order
    chosen, left = [], k
    for i, st in enumerate(strata):
        take = min(len(st), left // (len(strata) - i))
        chosen.append(rng.choice(st, size=take, replace=False))
        left -= take
    picked = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    if left > 0:  # cannot happen with the smallest-first order; kept as a guard against rounding
        rest = np.setdiff1d(pool, picked)
        picked = np.concatenate([picked, rng.choice(rest, size=min(left, len(rest)), replace=False)])
    return picked


def select_from_scores(strategy: str, scores: np.ndarray, labels: np.ndarray, n_classes: int, fraction: float,
                       seed: int = 0, config: ScoreParams = DEFAULT_SCORING) -> np.ndarray:
    """Positions kept for `fraction` given precomputed scores, sorted ascending (int64).

    Lets a caller score once and select several fractions.
    """
    check_strategy(strategy)
    check_config(config)
    check_fraction(fraction)
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(labels):
        raise DatasetError(f"{len(scores)} scores for {len(labels)} labels; expected one score per sample")
    if fraction >= 1.0:
        return np.arange(len(labels), dtype=np.int64)
    # Selection randomness (ties, CCS draws) is seeded apart from the random strategy's scores.
    rng = np.random.default_rng([seed, 1])
    kept = []
    for members in _groups(labels, n_classes, config.per_class):
        k = budget(fraction, len(members))
        if strategy == "ccs":
            kept.append(ccs_select(members, scores, k, config.ccs_beta, config.ccs_strata, rng))
        else:
            kept.append(_ranked(members, scores, rng, hardest_first=strategy not in KEEP_LOWEST)[:k])
    out = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    return np.sort(out).astype(np.int64)
