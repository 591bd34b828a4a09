"""Exact fixed-radius neighbours without scoring all pairs: a k-means partition tree.

`radius_pairs(queries, index, r)` returns every (query, index point) pair within distance r (r
included): the set brute force (sklearn's `radius_neighbors`) finds, after scoring only the pairs
that share a leaf of the tree.

The tree (SemDeDup's clustering, made exact): a node fits k-means on a bounded seeded sample of its
index points; each query goes to its nearest centre's child only, and each index point y to every
child c that a query within r of y can reach. Such a query q, sent to c, lies on c's side of the
bisector between c and y's nearest centre m; the signed distance to that bisector,
(|p-c|^2 - |p-m|^2) / (2|c-m|), changes by at most r from q to y, so y joins c when
|y-c|^2 - |y-m|^2 <= 2r|c-m| (plus a slack for float rounding). Every neighbour of a query is
therefore in the query's leaf, whatever k-means found. (This hyperplane test copied about half as
many points as the triangle-inequality one, d(y,c) <= d(y,m) + 2r.) A node is split only while the
split pays for itself (ROUTE_COST, LEAF_COST): where r is large against a node, the copies would
cost more than they save and the node stays a leaf. So the tree adapts to the radius; with a radius
fixed while the data get denser, copies grow (measured 5.8 per index point at 100k digits-like
points, 21 at 1M) and so does the work per point: this search is not linear in n.

Leaves are the parallel unit, grouped into items of similar work for a `Mapper`. In a leaf a float32
GEMM on the first PREFILTER_DIMS dimensions (for a PCA embedding the widest ones) prefilters: a
partial distance never exceeds the full one, and the margin is far above the GEMM's rounding error.
Each surviving pair is then decided on its own float64 difference, summed in a fixed order, against
r**2 (what sklearn's brute force compares). So each edge depends only on its two points: not on the
tree, the item grouping or the engine. (faiss was the alternative: its exact range search is brute
force, its fast indexes are approximate.)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from threadpoolctl import threadpool_limits

from prune_dagster.core.infra.parallel import BLOCK_ROWS, Mapper, serial_map

BRANCHING = 32  # children per node
KMEANS_PER_CENTRE = 32  # a node's k-means is fitted on at most this many of its index points per child
KMEANS_ITERS = 4
MAX_DEPTH = 24
PREFILTER_DIMS = 16  # the leaf GEMM's prefilter reads this many leading dimensions (1M: 19 s vs 23 s for all 32)
# Cost model, in units of one scored leaf pair (measured on this box): one point-to-centre
# distance while routing, and the fixed cost of a leaf (numpy calls). A node is split when its
# children's pairs plus their fixed costs come to less than its own pairs.
ROUTE_COST = 1.5
LEAF_COST = 150_000
ITEM_PAIRS = 1 << 25  # scored pairs per mapper item: ~0.1 s of work, few enough items to schedule
_CHUNK_CELLS = 1 << 17  # query x index cells per leaf GEMM: the block stays in cache
_GEMM_TOL = 1e-4  # prefilter margin, relative to squared norms about the leaf centre (20x the bound)
_ROUTE_TOL = 3e-4  # routing slack, relative to squared norms about the node origin (see _near_cells)


def radius_pairs(queries: np.ndarray, index: np.ndarray, radius: float, mapper: Mapper = serial_map,
                 seed: int = 0, branching: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Every (q, j) with ||queries[q] - index[j]|| <= radius, as two int64 arrays sorted by (q, j),
    and the number of pairs scored (the work; all pairs would be len(queries) * len(index)).

    `queries` (M, k) and `index` (N, k) may be the same array. The tree depends on `seed` and
    `branching` (default BRANCHING); the pairs do not, nor does anything depend on `mapper`.
    """
    queries, index = np.asarray(queries), np.asarray(index)
    if queries.ndim != 2 or index.ndim != 2 or queries.shape[1] != index.shape[1]:
        raise ValueError(f"queries {queries.shape} and index {index.shape}: expected (M, k) and (N, k)")
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"radius={radius}; expected a finite non-negative number")
    empty = np.zeros(0, dtype=np.int64)
    if len(queries) == 0 or len(index) == 0:
        return empty, empty, 0
    rng = np.random.default_rng(seed)
    # The search runs in float32. Wider inputs move by up to 6e-8 of their norm when cast: widen the
    # search radius by 16x that (a neighbour's norm is at most the largest index norm plus r).
    pad = 0.0
    if queries.dtype != np.float32 or index.dtype != np.float32:
        pad = 1e-6 * (max(float(np.sqrt((index[s:s + BLOCK_ROWS].astype(np.float64) ** 2).sum(axis=1)).max())
                          for s in range(0, len(index), BLOCK_ROWS)) + radius)
    items, scored = [], 0
    with threadpool_limits(1, user_api="blas"):  # small GEMMs: BLAS threads cost more than they give
        batch: list[tuple[np.ndarray, np.ndarray]] = []
        work = 0
        for leaf in _partition(queries, index, radius + pad, rng, max(branching or BRANCHING, 2)):
            batch.append(leaf)
            work += len(leaf[0]) * len(leaf[1])
            if work >= ITEM_PAIRS:
                items.append(_pack(batch))
                scored, batch, work = scored + work, [], 0
        if batch:
            items.append(_pack(batch))
            scored += work
    results = mapper(_leaf_pairs, items, {"queries": queries, "index": index, "radius": float(radius), "pad": pad})
    q = np.concatenate([r[0] for r in results] + [empty])
    j = np.concatenate([r[1] for r in results] + [empty])
    order = np.lexsort((j, q))
    return q[order], j[order], scored


def _rows(x: np.ndarray, ids: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """x[ids] - origin in float32 (one shared rounding frame for queries and index points)."""
    rows = x[ids].astype(np.float32, copy=False)
    rows -= origin
    return rows


def _centre_scores(x: np.ndarray, centres: np.ndarray, cn2: np.ndarray) -> np.ndarray:
    """|x - c|^2 - |x|^2 = |c|^2 - 2 x.c for each row and centre: orders the centres by distance, and
    differences of it are differences of squared distances, without |x|^2's cancellation."""
    return cn2[None, :] - 2.0 * (x @ centres.T)


def _centre_d2(x: np.ndarray, centres: np.ndarray, cn2: np.ndarray) -> np.ndarray:
    """Squared distances (rows, centres), float64."""
    return np.einsum("ij,ij->i", x, x)[:, None] - 2.0 * (x @ centres.T) + cn2[None, :]


def _kmeans(x: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    """Up to b distinct centres for x (float64): seeded from random distinct rows, then a few Lloyd
    steps. (k-means++ seeding split no better here and cost twice as much.)"""
    c = np.unique(x[rng.choice(len(x), min(b, len(x)), replace=False)], axis=0)
    for _ in range(KMEANS_ITERS):
        one_hot = np.zeros((len(x), len(c)))
        one_hot[np.arange(len(x)), _centre_d2(x, c, (c * c).sum(axis=1)).argmin(axis=1)] = 1.0
        counts = one_hot.sum(axis=0)
        filled = counts > 0
        c[filled] = (one_hot.T @ x)[filled] / counts[filled, None]
    return c


def _partition(queries: np.ndarray, index: np.ndarray, radius: float, rng: np.random.Generator,
               branching: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Leaves as (query ids, index ids), depth first; every query lands in exactly one leaf."""
    id_type = np.int32 if max(len(queries), len(index)) < 2**31 else np.int64
    stack = [(np.arange(len(queries), dtype=id_type), np.arange(len(index), dtype=id_type), 0)]
    while stack:
        q_ids, i_ids, depth = stack.pop()
        if len(q_ids) == 0 or len(i_ids) == 0:
            continue  # no pair here
        here = len(q_ids) * len(i_ids)
        # Even a split with no copies costs its routing and b leaves: skip the k-means if that can't pay.
        if depth >= MAX_DEPTH or here <= (len(q_ids) + len(i_ids)) * branching * ROUTE_COST + branching * LEAF_COST:
            yield q_ids, i_ids
            continue
        m = KMEANS_PER_CENTRE * branching
        fit = i_ids if len(i_ids) <= m else np.sort(rng.choice(i_ids, m, replace=False))
        c64 = _kmeans(index[fit].astype(np.float64), branching, rng)
        if len(c64) < 2:
            yield q_ids, i_ids
            continue
        # Route in float32 about the node's own origin, where the norms (and so the rounding) are small.
        origin = c64.mean(axis=0).astype(np.float32)
        c = (c64 - origin).astype(np.float32)
        cn2 = np.einsum("ij,ij->i", c, c)
        c_norm = float(np.sqrt(cn2.max()))
        band = (2.0 * radius * np.sqrt(((c[:, None].astype(np.float64) - c[None]) ** 2).sum(axis=2))).astype(np.float32)
        member = np.concatenate([_near_cells(_rows(index, i_ids[s:s + BLOCK_ROWS], origin), c, cn2, band,
                                             radius + c_norm) for s in range(0, len(i_ids), BLOCK_ROWS)])
        qc = np.concatenate([_centre_scores(_rows(queries, q_ids[s:s + BLOCK_ROWS], origin), c, cn2).argmin(axis=1)
                             for s in range(0, len(q_ids), BLOCK_ROWS)])
        i_counts = member.sum(axis=0)
        q_counts = np.bincount(qc, minlength=len(c))
        if int((i_counts * q_counts).sum()) + len(c) * LEAF_COST >= here:
            yield q_ids, i_ids  # the copies cost more than the split saves: r is large against this node
            continue
        cells = np.flatnonzero(member.T.copy())  # grouped by child, rows ascending
        i_split = np.split(i_ids[cells % len(i_ids)], np.cumsum(i_counts)[:-1])
        q_split = np.split(q_ids[np.argsort(qc.astype(np.int16), kind="stable")], np.cumsum(q_counts)[:-1])  # radix
        stack.extend((q_split[ch], i_split[ch], depth + 1) for ch in reversed(range(len(c))))


def _near_cells(x: np.ndarray, centres: np.ndarray, cn2: np.ndarray, band: np.ndarray, extent: float) -> np.ndarray:
    """(rows, children) bool: the children a query within the radius of row x can be sent to.

    The slack covers float32 rounding of the scores of x and of any query within the radius of x
    (|q| <= |x| + r): together below 1.6e-5 (|x| + r + max|c|)^2 in the worst case, the slack 19 times that.
    """
    score = _centre_scores(x, centres, cn2)
    nearest = score.argmin(axis=1)
    slack = np.float32(_ROUTE_TOL) * (np.sqrt(np.einsum("ij,ij->i", x, x)) + np.float32(extent)) ** 2
    return score - score[np.arange(len(score)), nearest][:, None] <= band[nearest] + slack[:, None]


def _pack(leaves: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    return {"q": np.concatenate([q for q, _ in leaves]), "i": np.concatenate([i for _, i in leaves]),
            "q_off": np.cumsum([0] + [len(q) for q, _ in leaves]),
            "i_off": np.cumsum([0] + [len(i) for _, i in leaves])}


def _leaf_pairs(item: dict[str, np.ndarray], queries: np.ndarray, index: np.ndarray, radius: float,
                pad: float) -> tuple[np.ndarray, np.ndarray]:
    """The pairs within `radius` among each leaf's queries x index points (a mapper work function)."""
    with threadpool_limits(1, user_api="blas"):  # a leaf's GEMMs are small: one thread is fastest
        q, j = _candidates(item, queries, index, (radius + pad) ** 2)
        keep = _exact_within(queries, index, q, j, radius * radius)
    return q[keep].astype(np.int64), j[keep].astype(np.int64)


def _candidates(item: dict[str, np.ndarray], queries: np.ndarray, index: np.ndarray,
                r2: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs whose float32 squared distance passes r2 plus the rounding margin."""
    out_q, out_j = [], []
    for leaf in range(len(item["q_off"]) - 1):
        q_ids = item["q"][item["q_off"][leaf]:item["q_off"][leaf + 1]]
        i_ids = item["i"][item["i_off"][leaf]:item["i_off"][leaf + 1]]
        y = index[i_ids, :PREFILTER_DIMS].astype(np.float32, copy=False)
        centre = y.mean(axis=0)  # about the leaf's centre the norms, and so the GEMM's rounding, are small
        y -= centre
        k = y.shape[1]
        # [-2x, |x|^2, 1] . [y, 1, |y|^2] = |x - y|^2: one GEMM, then one pass to compare
        y_aug = np.empty((k + 2, len(y)), dtype=np.float32)
        y_aug[:k] = y.T
        y_aug[k] = 1.0
        y_aug[k + 1] = np.einsum("ij,ij->i", y, y)
        tol_y = _GEMM_TOL * (float(y_aug[k + 1].max()) + r2)
        step = max(1, _CHUNK_CELLS // len(i_ids))
        for s in range(0, len(q_ids), step):
            qs = q_ids[s:s + step]
            x_aug = np.empty((len(qs), k + 2), dtype=np.float32)
            x_aug[:, :k] = queries[qs, :PREFILTER_DIMS]
            x_aug[:, :k] -= centre
            x_aug[:, k] = np.einsum("ij,ij->i", x_aug[:, :k], x_aug[:, :k])
            x_aug[:, k + 1] = 1.0
            x_aug[:, :k] *= -2.0
            near = (x_aug @ y_aug) <= (r2 + tol_y + _GEMM_TOL * x_aug[:, k])[:, None]
            cells = np.flatnonzero(near)  # (2-d np.nonzero is several times slower)
            out_q.append(qs[cells // len(i_ids)])
            out_j.append(i_ids[cells % len(i_ids)])
    empty = np.zeros(0, dtype=item["q"].dtype)
    return np.concatenate(out_q + [empty]), np.concatenate(out_j + [empty])


def _exact_within(queries: np.ndarray, index: np.ndarray, q: np.ndarray, j: np.ndarray, r2: float) -> np.ndarray:
    """||queries[q] - index[j]||^2 <= r2 per pair: float64, summed one dimension at a time, so each
    pair's value depends on its two points only (not on how many pairs share the call)."""
    diff = queries[q].astype(np.float64) - index[j].astype(np.float64)
    sq = diff * diff
    acc = np.zeros(len(q))
    for dim in range(sq.shape[1]):
        acc += sq[:, dim]
    return acc <= r2
