"""Near duplicates: neighbours within a radius, union-find into groups, keep one per group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from prune_dagster.core.embedding.full_res import confirmed, full_resolution_scale
from prune_dagster.core.embedding.neighbors import radius_pairs
from prune_dagster.core.embedding.pca import FIT_SAMPLE, flatten
from prune_dagster.core.errors import ConfigError
from prune_dagster.core.infra.parallel import BLOCK_ROWS, Mapper, row_blocks, serial_map
from prune_dagster.core.ledger import StepResult, removed_frame
from prune_dagster.core.params import Params
from prune_dagster.core.steps.frozen import NeedsFullPrune, NewBatch, OldRun

KEEP_POLICIES = ("first", "most_typical")
SCORE_MEANING = ("distance to the kept member of its group, in median nearest-neighbour distances "
                 "(the closest of the sample's shifted views)")


class NearDedupParams(Params):
    """Near duplicates: images closer than a radius, grouped, one kept per group."""

    enabled: bool = Field(default=True, description="false: the step passes its input through unchanged")
    threshold: float = Field(default=0.3, ge=0.0, le=10.0,
                             description="radius as a multiple of the median nearest-neighbour distance "
                                         "(0 removes nothing)")
    keep: Literal[KEEP_POLICIES] = Field(default="first", description="the member kept per group: first in "
                                                                      "dataset order, or most_typical (closest "
                                                                      "to the group's mean)")
    n_components: int = Field(default=32, ge=1, le=4096, description="PCA components of the embedding")
    seed: int = Field(default=0, ge=0, description="seed of the PCA fit sample")
    embedding: Literal["pixels", "representation"] = Field(
        default="pixels", description="pixels: brightness-normalised PCA views with one-pixel shifts (finds "
        "copies); representation: the shared representation's embeddings (learned or provided): finds "
        "semantically close samples, not only copies")

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


def linked_pairs(views: np.ndarray, radius: float, mapper: Mapper = serial_map, images: np.ndarray | None = None,
                 full_radius: float = np.inf) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(i, j, counts): each unordered pair i < j linked in `views` (any view of one within `radius` of
    view 0 of the other) and, when `images` are given, also within `full_radius` at full resolution
    (`prune_dagster.core.embedding.full_res`)."""
    n = views.shape[1]
    q, j, scored = radius_pairs(views.reshape(-1, views.shape[2]), views[0], radius, mapper)
    i = q % n
    off = i != j
    pairs = np.unique(np.stack([np.minimum(i[off], j[off]), np.maximum(i[off], j[off])], axis=1), axis=0)
    a, b = pairs[:, 0], pairs[:, 1]
    counts = {"pairs_scored": int(scored), "candidate_pairs": int(len(a))}
    if images is not None:
        ok = confirmed(images, a, b, full_radius, ONE_PIXEL_SHIFTS)
        a, b = a[ok], b[ok]
        counts["pairs_rejected_at_full_resolution"] = int((~ok).sum())
    return a, b, counts


def find_near_duplicates(ids: np.ndarray, embedding: np.ndarray, labels: np.ndarray,
                         threshold: float = 0.3, keep: str = "first", mapper: Mapper = serial_map,
                         radius: float | None = None, images: np.ndarray | None = None,
                         full_radius: float | None = None) -> StepResult:
    """Pairs closer than `threshold` × (median nearest-neighbour distance) are near duplicates.

    The radius is relative, so one default works across datasets and embeddings; its unit is
    measured on at most NN_SAMPLE rows (see `median_nn_distance`). Connected components of the
    radius graph (scipy's union-find) form the groups; `keep` picks the survivor: `first` in
    dataset order, or `most_typical` (the member closest to its group's mean; ties go to the
    first). A removed sample whose label differs from the survivor's is reported as
    `near_duplicate_label_conflict`.

    `embedding` is (N, k), or a (V, N, k) stack of views from `near_duplicate_views`: then i and j
    are linked when any view of i is within the radius of view 0 of j (e.g. j is i shifted by one
    pixel), and the median nearest-neighbour distance is taken in view 0. With `images` (the
    pixels the views were made from) a link must also hold at full resolution: within `threshold`
    × the full-resolution median nearest-neighbour distance (`prune_dagster.core.embedding.full_res`,
    which says why: PCA alone links distinct real digits).

    The radius graph is exact (the pairs brute force finds) without scoring all pairs: a k-means
    partition tree (`prune_dagster.core.embedding.neighbors`) whose leaves run through `mapper`; the result
    is the same for any mapper. `radius` and `full_radius`, when given, replace threshold × the
    median distances (incremental pruning's check reuses the last full prune's).
    """
    views = _checked_views(embedding, threshold, keep)
    base = views[0]
    n = len(ids)
    if n < 2 or threshold == 0:
        return StepResult(removed=removed_frame(), metadata={"groups": 0})
    scale, nn_rows = median_nn_distance(base, NN_SAMPLE) if radius is None else (radius / threshold, 0)
    radius = threshold * scale if radius is None else radius
    full = {} if images is None else {"full_resolution_scale": full_resolution_scale(
        images, base, nn_sample_rows(n), ONE_PIXEL_SHIFTS) if full_radius is None else full_radius / threshold}
    i, j, counts = linked_pairs(views, radius, mapper, images, threshold * full.get("full_resolution_scale", 0.0))
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    n_groups, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp, minlength=n_groups)
    survivor = _survivors(comp, sizes, base, keep)
    members = np.flatnonzero(sizes[comp] > 1)
    gone = members[survivor[comp[members]] != members]
    gone = gone[np.lexsort((gone, comp[gone]))]  # group by group, members in dataset order
    kept = survivor[comp[gone]]
    labels = np.asarray(labels)
    reasons = np.where(labels[gone] == labels[kept], "near_duplicate", "near_duplicate_label_conflict").astype(object)
    scores = np.linalg.norm(views[:, gone] - base[kept][None], axis=2).min(axis=0) / scale if len(gone) else []
    removed = removed_frame(np.asarray(ids, dtype=object)[gone], reasons, scores)
    return StepResult(removed=removed, metadata={
        "groups": int((sizes > 1).sum()),
        "largest_group": int(sizes.max()) if len(sizes) else 0,
        "views": int(len(views)),
        "median_nn_distance": round(scale, 5),
        "nn_sample": int(nn_rows),
        "radius": round(radius, 5),
        **{k: round(v, 5) for k, v in full.items()},
        **counts,
        # removed id -> the kept id it duplicates (the gallery draws them side by side; not a ledger column)
        "duplicate_of": dict(zip(removed["id"].tolist(), np.asarray(ids, dtype=object)[kept].tolist(), strict=True)),
    })


def _checked_views(embedding: np.ndarray, threshold: float, keep: str) -> np.ndarray:
    """The (V, N, k) views of `embedding`, after checking the step's arguments."""
    if keep not in KEEP_POLICIES:
        raise ConfigError(f"keep={keep!r}; expected one of {KEEP_POLICIES}")
    if threshold < 0:
        raise ConfigError(f"threshold={threshold}; expected a non-negative multiple of the median NN distance")
    embedding = np.asarray(embedding)
    if embedding.ndim not in (2, 3):
        raise ConfigError(f"embedding of shape {embedding.shape}; expected (N, k) or a (views, N, k) stack")
    return np.ascontiguousarray(embedding if embedding.ndim == 3 else embedding[None])


def _survivors(comp: np.ndarray, sizes: np.ndarray, base: np.ndarray, keep: str) -> np.ndarray:
    """Position of the kept member of each component (-1 for components of one)."""
    survivor = np.full(len(sizes), -1, dtype=np.int64)
    members = np.flatnonzero(sizes[comp] > 1)  # ascending, so a group's first member comes first
    if not len(members):
        return survivor
    groups, inverse = np.unique(comp[members], return_inverse=True)
    if keep == "first":
        survivor[groups] = members[np.unique(inverse, return_index=True)[1]]
        return survivor
    x = base[members].astype(np.float64)
    counts = np.bincount(inverse)
    centre = np.stack([np.bincount(inverse, weights=x[:, d], minlength=len(groups)) for d in range(x.shape[1])],
                      axis=1) / counts[:, None]
    diff = x - centre[inverse]
    dist = (diff * diff).sum(axis=1)
    order = np.lexsort((members, dist, inverse))  # by group, then distance to the mean, then position
    firsts = order[np.r_[True, np.diff(inverse[order]) != 0]]
    survivor[groups] = members[firsts]
    return survivor


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


@dataclass
class NearIndex:
    """What the incremental index keeps: the old step input's views on the old basis, its pixels, the
    old radii and the old groups (with `keep="first"`, a group's survivor is its first member)."""

    basis: PCA
    radius: float
    scale: float  # the median nearest-neighbour distance the radius was measured in
    full_radius: float  # the radius of the full-resolution check
    views: np.ndarray  # (V, n_old, k) views of the old step input, in dataset order
    pixels: np.ndarray  # (n_old, H, W, C) the old step input's images, for the full-resolution check
    comp: np.ndarray  # old group of each row of `views`
    survivor: np.ndarray  # row of each old group's survivor
    comp_label: np.ndarray  # label of each old group's survivor


def freeze(old: OldRun, params: NearDedupParams, mapper: Mapper = serial_map) -> NearIndex:
    """Recompute the last prune's views, radii and groups (about one pass of the step)."""
    if params.keep != "first":
        raise ConfigError("incremental pruning needs near_deduplicated.keep='first' (a 'most_typical' survivor "
                          "moves whenever a group gains a member)")
    if params.embedding != "pixels":  # new samples have no learned embedding until the next full prune
        raise ConfigError("incremental pruning needs near_deduplicated.embedding='pixels'")
    pos = old.input_positions()
    images = np.asarray(old.dataset.images[pos], dtype=np.float32)
    basis = fit_views_basis(images, params.n_components, params.seed)
    views = project_views(images, basis, mapper=mapper)
    scale = median_nn_distance(views[0])[0]
    n = views.shape[1]
    full_radius = params.threshold * full_resolution_scale(images, views[0], nn_sample_rows(n), ONE_PIXEL_SHIFTS)
    i, j, _ = linked_pairs(views, params.threshold * scale, mapper, images, full_radius)
    _, comp = connected_components(coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n)),
                                   directed=False)
    first = pd.Series(np.arange(n)).groupby(comp).min().to_numpy()
    return NearIndex(basis=basis, radius=params.threshold * scale, scale=scale, full_radius=full_radius,
                     views=views, pixels=images, comp=comp, survivor=first, comp_label=old.dataset.labels[pos][first])


def _links_to_old(frozen: NearIndex, new_views: np.ndarray, new_images: np.ndarray,
                  mapper: Mapper) -> tuple[np.ndarray, np.ndarray]:
    """(old group, new row) of every old-new pair within the radius, in both directions (a link when
    either side is view 0, as in the full step), and within the full-resolution radius."""
    old_views = frozen.views
    n_old, m = old_views.shape[1], new_views.shape[1]
    q, j, _ = radius_pairs(old_views.reshape(-1, old_views.shape[2]), new_views.reshape(-1, new_views.shape[2]),
                           frozen.radius, mapper)
    link = (q // n_old == 0) | (j // m == 0)
    pairs = np.unique(np.stack([(q % n_old)[link], (j % m)[link]], axis=1), axis=0)
    old_row, new_row = pairs[:, 0], pairs[:, 1]
    ok = confirmed(new_images, new_row, old_row, frozen.full_radius, ONE_PIXEL_SHIFTS, other=frozen.pixels)
    return frozen.comp[old_row[ok]], new_row[ok]


def decide(frozen: NearIndex, params: NearDedupParams, batch: NewBatch, mapper: Mapper = serial_map) -> None:
    """New samples within the radii of an old group or of an earlier new sample are removed; a new
    sample that would join two old groups needs a full prune (it would remove an old survivor)."""
    live = batch.live()
    if not len(live) or params.threshold == 0:
        return
    new_images = np.asarray(batch.images[live], dtype=np.float32)
    new_views = project_views(new_images, frozen.basis, mapper=mapper)
    m = len(live)
    old_comp, new_of_old = _links_to_old(frozen, new_views, new_images, mapper)
    i2, j2, _ = linked_pairs(new_views, frozen.radius, mapper, new_images, frozen.full_radius)
    n_old_comp = int(frozen.comp.max()) + 1 if len(frozen.comp) else 0
    # nodes: new samples 0..m-1, then old groups m..m+n_old_comp-1
    rows, cols = np.concatenate([i2, new_of_old]), np.concatenate([j2, m + old_comp])
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(m + n_old_comp,) * 2)
    _, comp = connected_components(graph, directed=False)
    old_in = np.unique(old_comp)
    if pd.Series(comp[m + old_in]).duplicated().any():
        raise NeedsFullPrune("a new sample joins two old near-duplicate groups (a full prune would keep only "
                             "one of their survivors)")
    comp_new = comp[:m]
    owner = pd.Series(old_in, index=comp[m + old_in])  # merged component → the old group in it
    has_old = pd.Index(owner.index).get_indexer(comp_new) >= 0
    old_group = owner.reindex(comp_new).fillna(0).astype(int).to_numpy()
    first_new = pd.Series(np.arange(m)).groupby(comp_new).transform("min").to_numpy()
    gone = has_old | (first_new != np.arange(m))
    labels = batch.labels[live]
    ref_label = np.where(has_old, frozen.comp_label[old_group], labels[first_new])
    reason = np.where(labels == ref_label, "near_duplicate", "near_duplicate_label_conflict").astype(object)
    old_base = (np.asarray(frozen.views[0])[frozen.survivor[old_group]] if len(frozen.survivor)
                else np.zeros_like(new_views[0]))
    kept_base = np.where(has_old[:, None], old_base, new_views[0][first_new])
    score = np.linalg.norm(new_views - kept_base[None], axis=2).min(axis=0) / frozen.scale
    batch.drop(live[gone], reason[gone], score[gone])
