"""The near-duplicate step at scale: an exact radius graph without scoring all pairs, the radius unit
from a bounded sample, groups resolved without a Python loop, and one answer under any mapper."""

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.neighbors import NearestNeighbors

from prune_dagster.core.data.dataset import TRAIN
from prune_dagster.core.embedding import neighbors
from prune_dagster.core.embedding import views as view_module
from prune_dagster.core.embedding.pca import pca_embed
from prune_dagster.core.ledger import removed_frame
from prune_dagster.core.steps import near_dup
from prune_dagster.core.steps.near_dup import find_near_duplicates, median_nn_distance, near_duplicate_views
from prune_dagster.fixtures.defects import load_dirty_digits


def _brute_pairs(queries, index, radius):
    found = NearestNeighbors(algorithm="brute").fit(index).radius_neighbors(queries, radius, return_distance=False)
    q = np.repeat(np.arange(len(queries)), [len(f) for f in found])
    j = np.concatenate(found).astype(np.int64)
    order = np.lexsort((j, q))
    return q[order], j[order]


def _all_pairs_reference(ids, views, labels, threshold):
    """The step as it was before it scaled (sklearn radius search of every view, a loop over groups)."""
    base, n = views[0], len(ids)
    dist, _ = NearestNeighbors(n_neighbors=2).fit(base).kneighbors(base)
    scale = float(np.median(dist[:, 1][dist[:, 1] > 0]))
    nn = NearestNeighbors().fit(base)
    rows, cols = [], []
    for view in views:
        found = nn.radius_neighbors(view, radius=threshold * scale, return_distance=False)
        rows.append(np.repeat(np.arange(n), [len(f) for f in found]))
        cols.append(np.concatenate(found))
    r, c = np.concatenate(rows), np.concatenate(cols)
    _, comp = connected_components(coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n)), directed=False)
    gone, reasons, scores = [], [], []
    for g in np.flatnonzero(np.bincount(comp) > 1):
        members = np.flatnonzero(comp == g)
        for m in members[1:]:
            gone.append(m)
            reasons.append("near_duplicate" if labels[m] == labels[members[0]] else "near_duplicate_label_conflict")
            scores.append(float(np.linalg.norm(views[:, m] - base[members[0]], axis=1).min() / scale))
    return removed_frame(np.asarray(ids, dtype=object)[gone], reasons, scores)


def _remote_map(fn, items, shared=None):
    """A stand-in for a cluster: every argument crosses a pickle, items run concurrently in reverse
    order, results come back in item order."""
    calls.append(len(items))
    fn, items, shared = pickle.loads(pickle.dumps((fn, list(items), dict(shared or {}))))
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(fn, item, **shared) for item in reversed(items)]
    return [pickle.loads(pickle.dumps(f.result())) for f in reversed(futures)]


calls: list[int] = []


@pytest.fixture(scope="module")
def dirty():
    ds = load_dirty_digits("dirty-digits?seed=0")
    train = ds.split == TRAIN
    ids, images, labels = ds.ids[train], ds.images[train], ds.labels[train]
    return ids, images, labels, near_duplicate_views(images)


@pytest.fixture
def deep_tree(monkeypatch):
    """Small leaves and few children: many levels, many copies across cell borders, many items."""
    monkeypatch.setattr(neighbors, "LEAF_COST", 500)
    monkeypatch.setattr(neighbors, "ROUTE_COST", 0.1)
    monkeypatch.setattr(neighbors, "BRANCHING", 4)
    monkeypatch.setattr(neighbors, "ITEM_PAIRS", 20_000)


def test_radius_pairs_equal_brute_force_with_duplicates_and_ties(deep_tree):
    rng = np.random.default_rng(0)
    # Clusters in 16-d, exact duplicates, and noisy copies as extra queries.
    centres = rng.normal(0, 3, (12, 16))
    index = (centres[rng.integers(12, size=2500)] + rng.normal(0, 1, (2500, 16))).astype(np.float32)
    index[2000:2100] = index[:100]
    queries = np.concatenate([index, index[:500] + rng.normal(0, 0.2, (500, 16)).astype(np.float32)])
    for radius in (0.5, 1.5, 3.0):
        q, j, scored = neighbors.radius_pairs(queries, index, radius, branching=4)
        bq, bj = _brute_pairs(queries, index, radius)
        assert np.array_equal(q, bq) and np.array_equal(j, bj), radius
        assert scored < 0.5 * len(queries) * len(index)  # the tree pruned (all pairs: 1.0)
    # A 5-d integer grid: many pairs exactly at the radius (squared distance 4 = 2.0**2, exact).
    grid = rng.integers(0, 7, (2500, 5)).astype(np.float32)
    q, j, _ = neighbors.radius_pairs(grid, grid, 2.0, branching=4)
    bq, bj = _brute_pairs(grid, grid, 2.0)
    assert np.array_equal(q, bq) and np.array_equal(j, bj)
    on_edge = ((grid[q] - grid[j]) ** 2).sum(axis=1) == 4.0
    assert on_edge.sum() > 1000  # ties included, as brute force includes them
    assert len(np.unique(grid, axis=0)) < len(grid) - 10  # and duplicates
    # float64 far from the origin (the search runs in float32 about local origins)
    far = 1000.0 + index[:1500].astype(np.float64)
    q, j, _ = neighbors.radius_pairs(far, far, 1.5, branching=4)
    bq, bj = _brute_pairs(far, far, 1.5)
    assert np.array_equal(q, bq) and np.array_equal(j, bj)


def test_radius_pairs_do_not_depend_on_the_tree_or_the_mapper(deep_tree):
    rng = np.random.default_rng(1)
    index = rng.normal(0, 1, (3000, 8)).astype(np.float32)
    queries = np.concatenate([index, index + rng.normal(0, 0.05, index.shape).astype(np.float32)])
    shallow = neighbors.radius_pairs(queries, index, 0.6, branching=32, seed=5)
    calls.clear()
    deep = neighbors.radius_pairs(queries, index, 0.6, mapper=_remote_map, branching=3, seed=1)
    assert calls and calls[0] > 10  # the leaves went out as many items
    assert np.array_equal(shallow[0], deep[0]) and np.array_equal(shallow[1], deep[1])
    assert deep[2] != shallow[2]  # a different tree scored different pairs, and found the same ones


def test_same_removals_as_the_all_pairs_step(dirty):
    ids, _, labels, views = dirty
    for threshold in (0.3, 1.0):
        expected = _all_pairs_reference(ids, views, labels, threshold)
        got = find_near_duplicates(ids, views, labels, threshold)
        pd.testing.assert_frame_equal(got.removed, expected, check_exact=True)
        assert len(got.removed) > (80 if threshold == 0.3 else 600)


def test_same_answer_under_a_remote_mapper(dirty, deep_tree, monkeypatch):
    ids, images, labels, views = dirty
    monkeypatch.setattr(view_module, "VIEW_BLOCK_ROWS", 300)
    calls.clear()
    remote_views = near_duplicate_views(images, mapper=_remote_map)
    assert calls[0] == 4 and sum(calls) == -(-len(images) // 300)  # blocks of 300, four per call
    assert np.array_equal(remote_views, views)  # bit for bit
    for keep in ("first", "most_typical"):
        serial = find_near_duplicates(ids, views, labels, 1.0, keep)
        calls.clear()
        remote = find_near_duplicates(ids, views, labels, 1.0, keep, mapper=_remote_map)
        assert calls[0] > 5
        pd.testing.assert_frame_equal(remote.removed, serial.removed, check_exact=True)
        assert remote.metadata == serial.metadata


def test_most_typical_keeps_the_member_nearest_the_group_mean(digits_train):
    ids, images, labels = digits_train
    emb = pca_embed(images)
    step = np.zeros(emb.shape[1], dtype=np.float32)
    step[0] = 1e-3
    # Three copies on a line, the middle one (nearest the mean) not first; and a pair, a tie: first kept.
    extra = np.stack([emb[0] + step, emb[0] + 2 * step, emb[1] + step])
    emb2 = np.concatenate([emb, extra])
    ids2 = np.concatenate([ids, np.array(["middle", "far", "twin"], dtype=object)])
    labels2 = np.concatenate([labels, labels[[0, 0, 1]]])
    typical = find_near_duplicates(ids2, emb2, labels2, keep="most_typical")
    assert list(typical.removed["id"]) == [ids[0], "far", "twin"]
    first = find_near_duplicates(ids2, emb2, labels2, keep="first")
    assert list(first.removed["id"]) == ["middle", "far", "twin"]
    assert typical.metadata["groups"] == first.metadata["groups"] == 2


def test_radius_unit_from_a_bounded_sample(digits_train, monkeypatch):
    ids, images, labels = digits_train
    emb = pca_embed(images)
    full = NearestNeighbors(n_neighbors=2).fit(emb).kneighbors(emb)[0][:, 1]
    assert find_near_duplicates(ids, emb, labels).metadata["median_nn_distance"] == round(float(np.median(full)), 5)
    monkeypatch.setattr(near_dup, "NN_SAMPLE", 500)
    result = find_near_duplicates(ids, emb, labels)
    rows = emb[np.sort(np.random.default_rng(view_module.NN_SEED).choice(len(emb), 500, replace=False))]
    sub = NearestNeighbors(n_neighbors=2).fit(rows).kneighbors(rows)[0][:, 1]
    assert result.metadata["nn_sample"] == 500
    assert result.metadata["median_nn_distance"] == round(float(np.median(sub)), 5) == round(
        median_nn_distance(emb, 500)[0], 5)
    assert np.median(sub) > 1.1 * np.median(full)  # sparser sample, wider spacing: the unit of "as at 500 rows"


def test_never_scores_all_pairs():
    rng = np.random.default_rng(0)
    ds = load_dirty_digits("dirty-digits?seed=0&near_duplicate_rate=0&exact_duplicate_rate=0")
    src = ds.images[rng.integers(len(ds.images), size=20_000)]
    images = np.clip(src + rng.normal(0, 0.05, src.shape), 0, 1).astype(np.float32)
    copies = rng.choice(len(images), 200, replace=False)
    images[-200:] = np.clip(images[copies] + rng.normal(0, 0.01, (200, *images.shape[1:])), 0, 1)
    ids = np.array([f"s{i}" for i in range(len(images))], dtype=object)
    result = find_near_duplicates(ids, near_duplicate_views(images), np.zeros(len(images), dtype=int))
    assert result.metadata["pairs_scored"] < 0.05 * 5 * len(images) ** 2
    removed = set(result.removed["id"])
    found = sum(ids[c] in removed or ids[len(images) - 200 + k] in removed for k, c in enumerate(copies))
    assert found >= 195
