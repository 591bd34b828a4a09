"""Views of images for the near-duplicate search: brightness-normalised PCA projections of each image
and of its one-pixel shifts, and the unit its radius is measured in (the median nearest-neighbour
distance)."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from prune_dagster.core.embedding.pca import FIT_SAMPLE, flatten
from prune_dagster.core.infra.parallel import BLOCK_ROWS, Mapper, row_blocks, serial_map

# One-pixel rolls (axis of an (N, H, W, C) array, step) that `near_duplicate_views` also embeds.
ONE_PIXEL_SHIFTS: tuple[tuple[int, int], ...] = ((1, 1), (1, -1), (2, 1), (2, -1))

# The median nearest-neighbour distance (the radius' unit) is measured on at most this many rows,
# nearest neighbours within that seeded sample: exact below it, and above it the spacing "as at
# 10k", so one threshold means the same closeness at every dataset size.
NN_SAMPLE = 10_000
NN_SEED = 0
# `near_duplicate_views` projects row blocks of this size, this many blocks per mapper call (which
# bounds the block results held at once to ~170 MB at k=32).
VIEW_BLOCK_ROWS = BLOCK_ROWS
_VIEW_BLOCKS_PER_CALL = 4


def _unit_rows(x: np.ndarray, norms: np.ndarray) -> np.ndarray:
    return x / np.where(norms > 0, norms, 1.0)


def _views_block(block: np.ndarray, pca: PCA, shifts: tuple[tuple[int, int], ...]) -> np.ndarray:
    """(1 + len(shifts), rows, k) views of one row block of images (a mapper work function)."""
    x = flatten(block)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out = np.empty((1 + len(shifts), len(block), pca.n_components_), dtype=np.float32)
    out[0] = pca.transform(_unit_rows(x, norms))
    for v, (axis, step) in enumerate(shifts, start=1):
        out[v] = pca.transform(_unit_rows(flatten(np.roll(block, step, axis=axis)), norms))
    return out


def near_duplicate_views(images: np.ndarray, n_components: int = 32, seed: int = 0,
                         shifts: tuple[tuple[int, int], ...] = ONE_PIXEL_SHIFTS,
                         mapper: Mapper = serial_map) -> np.ndarray:
    """A (1 + len(shifts), N, k) float32 stack of embeddings that makes near duplicates tolerant of
    a brightness change and a one-pixel shift; pass it to `find_near_duplicates` as `embedding`.

    Each image is scaled to unit L2 norm (so a gain leaves it where it was, up to clipped pixels)
    and projected on one PCA basis fitted to the unshifted images; view 0 is the image, view v its
    v-th one-pixel roll. Measured on dirty digits (distances in median nearest-neighbour units): in
    plain pixel PCA a one-pixel-shifted copy lies mostly 2-3.7 from its source and a 10-20%
    brightness change up to 0.9, while 1% of clean digits have a neighbour within 0.56, so no radius
    separates them (at threshold 0.3 it finds none of the shifts and 5-7% of the brightness changes);
    in these views every planted copy lies within 0.31 of its source and fewer than 0.5% of clean
    digits have a neighbour within 0.5. With the default threshold 0.3 the step found 97-100% of
    the planted near duplicates and removed no clean digit (benchmarks/defects.py).

    The basis is fitted on at most FIT_SAMPLE images; the projection runs in row blocks through
    `mapper`, so only the output (V x N x k float32: 640 MB at 1M, k=32) is held at full size.
    """
    return project_views(images, fit_views_basis(images, n_components, seed), shifts, mapper)


def nn_sample_rows(n: int, sample: int = NN_SAMPLE, seed: int = NN_SEED) -> np.ndarray:
    """The rows the radius' unit is measured on: all `n` up to `sample`, else a sorted seeded sample."""
    return np.arange(n) if n <= sample else np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))


def median_nn_distance(base: np.ndarray, sample: int = NN_SAMPLE, seed: int = NN_SEED) -> tuple[float, int]:
    """(median of the non-zero nearest-neighbour distances, rows used): all rows up to `sample`,
    else a seeded random `sample` of them with neighbours looked up within that sample."""
    rows = base[nn_sample_rows(len(base), sample, seed)]
    dist, _ = NearestNeighbors(n_neighbors=2).fit(rows).kneighbors(rows)
    nn_dist = dist[:, 1]
    return (float(np.median(nn_dist[nn_dist > 0])) if (nn_dist > 0).any() else 1.0), len(rows)


def fit_views_basis(images: np.ndarray, n_components: int = 32, seed: int = 0) -> PCA:
    """The basis `near_duplicate_views` fits (same sample, same seed), for projecting later samples."""
    n = len(images)
    k = max(1, min(n_components, int(np.prod(images.shape[1:])), n))
    rng = np.random.default_rng(seed)
    fit = flatten(images if n <= FIT_SAMPLE else images[rng.choice(n, FIT_SAMPLE, replace=False)])
    return PCA(n_components=k, random_state=seed).fit(_unit_rows(fit, np.linalg.norm(fit, axis=1, keepdims=True)))


def project_views(images: np.ndarray, pca: PCA, shifts: tuple[tuple[int, int], ...] = ONE_PIXEL_SHIFTS,
                  mapper: Mapper = serial_map) -> np.ndarray:
    """(1 + len(shifts), N, k) views of `images` on a fitted basis (see `near_duplicate_views`)."""
    out = np.empty((1 + len(shifts), len(images), pca.n_components_), dtype=np.float32)
    blocks = row_blocks(len(images), VIEW_BLOCK_ROWS)
    for c in range(0, len(blocks), _VIEW_BLOCKS_PER_CALL):
        call = blocks[c:c + _VIEW_BLOCKS_PER_CALL]
        for (s, e), block_views in zip(call, mapper(_views_block, [images[s:e] for s, e in call],
                                                    {"pca": pca, "shifts": tuple(shifts)}), strict=True):
            out[:, s:e] = block_views
    return out
