"""Near duplicates: nearest neighbours within a radius, union-find into groups, keep one per group."""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from prune_dagster.core.embed import FIT_SAMPLE, flatten
from prune_dagster.core.errors import ConfigError
from prune_dagster.core.ledger import StepResult, removed_frame

KEEP_POLICIES = ("first", "most_typical")

# One-pixel rolls (axis of an (N, H, W, C) array, step) that `near_duplicate_views` also embeds.
ONE_PIXEL_SHIFTS: tuple[tuple[int, int], ...] = ((1, 1), (1, -1), (2, 1), (2, -1))


def near_duplicate_views(images: np.ndarray, n_components: int = 32, seed: int = 0,
                         shifts: tuple[tuple[int, int], ...] = ONE_PIXEL_SHIFTS) -> np.ndarray:
    """A (1 + len(shifts), N, k) stack of embeddings that makes near duplicates tolerant of a
    brightness change and a one-pixel shift; pass it to `find_near_duplicates` as `embedding`.

    Each image is scaled to unit L2 norm (so a gain leaves it where it was, up to clipped pixels)
    and projected on one PCA basis fitted to the unshifted images; view 0 is the image, view v its
    v-th one-pixel roll. Measured on dirty digits (distances in median nearest-neighbour units): in
    plain pixel PCA a one-pixel-shifted copy lies mostly 2-3.7 from its source and a 10-20%
    brightness change up to 0.9, while 1% of clean digits have a neighbour within 0.56, so no radius
    separates them (at threshold 0.3 it finds none of the shifts and 5-7% of the brightness changes);
    in these views every planted copy lies within 0.31 of its source and fewer than 0.5% of clean
    digits have a neighbour within 0.5. With the default threshold 0.3 the step found 97-100% of
    the planted near duplicates and removed no clean digit (benchmarks/defects.py).
    """
    x = flatten(images)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    k = max(1, min(n_components, x.shape[1], len(x)))
    rng = np.random.default_rng(seed)
    fit = x if len(x) <= FIT_SAMPLE else x[rng.choice(len(x), FIT_SAMPLE, replace=False)]
    pca = PCA(n_components=k, random_state=seed).fit(fit)
    views = [pca.transform(x)]
    for axis, step in shifts:
        rolled = flatten(np.roll(images, step, axis=axis))
        views.append(pca.transform(rolled / np.where(norms > 0, norms, 1.0)))
    return np.stack(views).astype(np.float32)


def _radius_edges(embedding: np.ndarray, radius: float, nn: NearestNeighbors) -> coo_matrix:
    """Pairs (i, j), i != j, with view v of i within `radius` of view 0 of j, for any view v."""
    n = embedding.shape[1]
    rows, cols = [], []
    for view in embedding:
        neighbours = nn.radius_neighbors(view, radius=radius, return_distance=False)
        counts = np.fromiter((len(nb) for nb in neighbours), dtype=np.int64, count=n)
        rows.append(np.repeat(np.arange(n), counts))
        cols.append(np.concatenate(neighbours) if counts.sum() else np.zeros(0, dtype=np.int64))
    r, c = np.concatenate(rows), np.concatenate(cols).astype(np.int64)
    off = r != c
    return coo_matrix((np.ones(int(off.sum())), (r[off], c[off])), shape=(n, n))


def find_near_duplicates(ids: np.ndarray, embedding: np.ndarray, labels: np.ndarray,
                         threshold: float = 0.3, keep: str = "first") -> StepResult:
    """Pairs closer than `threshold` × (median nearest-neighbour distance) are near duplicates.

    The radius is relative, so one default works across datasets and embeddings. Connected
    components of the radius graph (scipy's union-find) form the groups; `keep` picks the survivor:
    `first` in dataset order, or `most_typical` (the member closest to its group's mean). A removed
    sample whose label differs from the survivor's is reported as `near_duplicate_label_conflict`.

    `embedding` is (N, k), or a (V, N, k) stack of views from `near_duplicate_views`: then i and j
    are linked when any view of i is within the radius of view 0 of j (e.g. j is i shifted by one
    pixel), and the median nearest-neighbour distance is taken in view 0.
    """
    if keep not in KEEP_POLICIES:
        raise ConfigError(f"keep={keep!r}; expected one of {KEEP_POLICIES}")
    if threshold < 0:
        raise ConfigError(f"threshold={threshold}; expected a non-negative multiple of the median NN distance")
    embedding = np.asarray(embedding)
    if embedding.ndim not in (2, 3):
        raise ConfigError(f"embedding of shape {embedding.shape}; expected (N, k) or a (views, N, k) stack")
    views = embedding if embedding.ndim == 3 else embedding[None]
    base = views[0]
    n = len(ids)
    if n < 2 or threshold == 0:
        return StepResult(removed=removed_frame(), metadata={"groups": 0})
    nn = NearestNeighbors(n_neighbors=2).fit(base)
    dist, _ = nn.kneighbors(base)
    nn_dist = dist[:, 1]
    scale = float(np.median(nn_dist[nn_dist > 0])) if (nn_dist > 0).any() else 1.0
    radius = threshold * scale
    n_groups, comp = connected_components(_radius_edges(views, radius, nn), directed=False)
    sizes = np.bincount(comp, minlength=n_groups)
    removed_pos, reasons, scores = [], [], []
    for g in np.flatnonzero(sizes > 1):
        members = np.flatnonzero(comp == g)
        if keep == "first":
            survivor = members[0]
        else:
            centre = base[members].mean(axis=0)
            survivor = members[np.argmin(np.linalg.norm(base[members] - centre, axis=1))]
        for m in members[members != survivor]:
            removed_pos.append(m)
            reasons.append("near_duplicate" if labels[m] == labels[survivor] else "near_duplicate_label_conflict")
            scores.append(float(np.linalg.norm(views[:, m] - base[survivor], axis=1).min() / scale))
    removed = removed_frame(np.asarray(ids, dtype=object)[removed_pos], reasons, scores)
    return StepResult(removed=removed, metadata={
        "groups": int((sizes > 1).sum()),
        "largest_group": int(sizes.max()) if len(sizes) else 0,
        "views": int(len(views)),
        "median_nn_distance": round(scale, 5),
        "radius": round(radius, 5),
    })
