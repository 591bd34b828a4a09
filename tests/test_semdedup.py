"""Semantic deduplication: known duplicate groups collapse to one member each, the count is exact."""

from __future__ import annotations

import numpy as np
import pytest

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.selection.semdedup import (
    SemDedupParams,
    greedy_keep,
    normalise,
    prepare,
    select,
    semdedup_select,
)

ALL = SemDedupParams(per_class=False)


def groups(rng: np.random.Generator, n_groups: int, copies: int, dim: int = 32, noise: float = 0.03,
           ) -> tuple[np.ndarray, np.ndarray]:
    """n_groups random directions, each with `copies` slightly perturbed members; (embeddings, group)."""
    base = rng.normal(size=(n_groups, dim))
    x = np.concatenate([base + rng.normal(scale=noise, size=base.shape) for _ in range(copies)])
    return x, np.tile(np.arange(n_groups), copies)


def test_keeps_one_per_duplicate_group(rng):
    x, group = groups(rng, 300, 4)
    result = semdedup_select(x, 0.25, params=ALL)
    assert len(result.kept) == 300
    assert len(np.unique(group[result.kept])) == 300  # one member of every group, no group lost
    assert result.adjusted == 0  # bisection hit the count: the structure has a clean gap
    eps = result.epsilon[0]
    kept = np.zeros(len(x), bool)
    kept[result.kept] = True
    assert result.scores[kept].max() <= 1 - eps < result.scores[~kept].min()


def test_scores_are_similarity_to_a_kept_member(rng):
    x, group = groups(rng, 50, 2, noise=0.01)
    result = semdedup_select(x, 0.5, params=ALL)
    xn = normalise(x)
    dropped = np.setdiff1d(np.arange(len(x)), result.kept)
    for i in dropped[:10]:
        twin = result.kept[group[result.kept] == group[i]][0]
        assert result.scores[i] == pytest.approx(float(xn[i] @ xn[twin]), abs=1e-5)
        assert result.scores[i] > 0.99


def test_unique_data_is_thinned_evenly_and_count_is_exact(rng):
    x = rng.normal(size=(400, 16))
    for fraction in (0.1, 0.37, 1.0):
        result = semdedup_select(x, fraction, params=ALL)
        assert len(result.kept) == round(fraction * 400)
        assert np.all(np.diff(result.kept) > 0)


def test_per_class_budget(rng):
    x, _ = groups(rng, 100, 3)
    labels = rng.integers(0, 4, len(x))
    result = semdedup_select(x, 0.5, labels=labels)
    for c in range(4):
        assert (labels[result.kept] == c).sum() == round(0.5 * (labels == c).sum())


def test_keep_first_picks_the_member_nearest_the_centroid():
    # One cluster: a tight pair near the centre direction and a far member; the pair keeps its
    # member nearest to the centroid with keep_first=nearest, the other one with farthest.
    x = np.array([[1.0, 0.0, 0.0], [0.999, 0.02, 0.0], [0.0, 1.0, 0.2]])
    near = semdedup_select(x, 2 / 3, params=SemDedupParams(per_class=False, n_clusters=1))
    far = semdedup_select(x, 2 / 3, params=SemDedupParams(per_class=False, n_clusters=1, keep_first="farthest"))
    assert 2 in near.kept and 2 in far.kept
    assert {int(i) for i in near.kept} ^ {int(i) for i in far.kept} == {0, 1}


def test_greedy_counts_only_kept_members():
    # a~b and b~c above the threshold, a and c apart: b goes, c stays (it is near only the dropped b).
    sim = np.array([[1.0, 0.95, 0.5], [0.95, 1.0, 0.95], [0.5, 0.95, 1.0]])
    assert greedy_keep(sim, 0.9).tolist() == [True, False, True]


def test_seeded_and_bad_input(rng):
    x, _ = groups(rng, 60, 3)
    a, b = semdedup_select(x, 0.4, params=ALL), semdedup_select(x, 0.4, params=ALL)
    assert np.array_equal(a.kept, b.kept) and np.array_equal(a.scores, b.scores)
    with pytest.raises(ConfigError, match="target_fraction"):
        semdedup_select(x, 0.0)
    with pytest.raises(ConfigError, match="labels"):
        semdedup_select(x, 0.5, labels=np.zeros(3))


def test_prepare_once_select_many(rng):
    x, _ = groups(rng, 80, 3)
    labels = rng.integers(0, 3, len(x))
    index = prepare(x, labels)
    for fraction in (0.2, 0.5, 0.9):
        once = semdedup_select(x, fraction, labels=labels)
        again = select(index, fraction)
        assert np.array_equal(once.kept, again.kept) and np.array_equal(once.scores, again.scores)
