"""Near duplicates: neighbours within a radius, union-find into groups, keep one per group."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.decomposition import PCA

from prune_dagster.core.embedding.full_res import confirmed, full_resolution_scale
from prune_dagster.core.embedding.groups import merge_new
from prune_dagster.core.embedding.neighbors import radius_pairs
from prune_dagster.core.embedding.views import (
    NN_SAMPLE,
    ONE_PIXEL_SHIFTS,
    fit_views_basis,
    median_nn_distance,
    near_duplicate_views,
    nn_sample_rows,
    project_views,
)
from prune_dagster.core.errors import ConfigError
from prune_dagster.core.infra.parallel import Mapper, serial_map
from prune_dagster.core.ledger import StepResult, removed_frame
from prune_dagster.core.params import Params
from prune_dagster.core.steps.base import StepInputs, content_of
from prune_dagster.core.steps.frozen import NewBatch, OldRun

# Re-exported: the near-duplicate API in one place for callers (benchmarks, tests).
__all__ = ["ONE_PIXEL_SHIFTS", "NearDedupParams", "find_near_duplicates", "median_nn_distance",
           "near_duplicate_views", "project_views", "run"]

KEEP_POLICIES = ("first", "most_typical")
SCORE_MEANING = ("distance to the kept member of its group: images, in median nearest-neighbour distances (the "
                 "closest of the sample's shifted views); texts, 1 - the Jaccard similarity of their shingles; "
                 "tables, the largest relative difference of a number, in tolerances")
DESCRIPTION = ("Groups samples closer than the threshold (radius graph + union-find) and keeps one per group. "
               "By default each image is compared as itself and as its one-pixel shifts, brightness-normalised, "
               "in PCA space, each candidate pair confirmed on the full-resolution pixels, so shifted and "
               "re-exposed copies count as duplicates too; `embedding: representation` compares the shared "
               "representation's embeddings instead.")
REMOVES = "all but one of each group of near copies (shifted, re-exposed, re-encoded)"
KEY_SETTINGS = ("threshold", "text_jaccard", "table_tolerance")


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
    embedding: Literal["raw", "representation"] = Field(
        default="raw", description="raw: the kind's own search (images: brightness-normalised PCA views with "
        "one-pixel shifts, confirmed at full resolution; texts: MinHash LSH, confirmed by exact Jaccard; "
        "tables: numbers within table_tolerance, categories equal): finds copies; representation: the shared "
        "representation's embeddings (learned or provided): finds semantically close samples, not only copies")
    text_jaccard: float = Field(default=0.8, gt=0.0, le=1.0, description="texts: pairs whose shingle sets have "
                                "at least this exact Jaccard similarity are near duplicates")
    num_perm: int = Field(default=128, ge=16, le=1024, description="texts: MinHash permutations of the LSH index")
    table_tolerance: float = Field(default=0.01, ge=0.0, lt=1.0, description="tables: rows whose categories "
                                   "agree and whose every number agrees within this share of the larger "
                                   "(|a - b| <= tolerance x max(|a|, |b|)) are near duplicates")


PARAMS = NearDedupParams

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
    n = len(ids)
    if n < 2 or threshold == 0:
        return StepResult(removed=removed_frame(), metadata={"groups": 0})
    groups = near_duplicate_groups(views, threshold, keep, mapper, radius, images, full_radius)
    return group_result(ids, labels, views, groups)


@dataclass
class Groups:
    """The step's groups: component of each row, each component's size and kept row, the radii and counts."""

    comp: np.ndarray
    sizes: np.ndarray
    survivor: np.ndarray  # kept row per component (-1 for components of one)
    scale: float  # the median nearest-neighbour distance (the radius' unit)
    radius: float
    full: dict[str, float]  # {"full_resolution_scale": ...} when the pixels were checked
    counts: dict[str, int]
    nn_rows: int

    @property
    def full_radius(self) -> float:
        return self.radius / self.scale * self.full.get("full_resolution_scale", np.inf)


def near_duplicate_groups(views: np.ndarray, threshold: float, keep: str, mapper: Mapper = serial_map,
                          radius: float | None = None, images: np.ndarray | None = None,
                          full_radius: float | None = None) -> Groups:
    """Connected components of the radius graph over (V, N, k) `views` (see find_near_duplicates)."""
    base, n = views[0], views.shape[1]
    scale, nn_rows = median_nn_distance(base, NN_SAMPLE) if radius is None else (radius / threshold, 0)
    radius = threshold * scale if radius is None else radius
    full = {} if images is None else {"full_resolution_scale": full_resolution_scale(
        images, base, nn_sample_rows(n), ONE_PIXEL_SHIFTS) if full_radius is None else full_radius / threshold}
    i, j, counts = linked_pairs(views, radius, mapper, images, threshold * full.get("full_resolution_scale", 0.0))
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    n_groups, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp, minlength=n_groups)
    return Groups(comp, sizes, _survivors(comp, sizes, base, keep), scale, radius, full, counts, int(nn_rows))


def group_result(ids: np.ndarray, labels: np.ndarray, views: np.ndarray, g: Groups) -> StepResult:
    """Ledger rows of every member but the survivor of each group, with the metadata the asset shows."""
    base = views[0]
    members = np.flatnonzero(g.sizes[g.comp] > 1)
    gone = members[g.survivor[g.comp[members]] != members]
    gone = gone[np.lexsort((gone, g.comp[gone]))]  # group by group, members in dataset order
    kept = g.survivor[g.comp[gone]]
    labels = np.asarray(labels)
    reasons = np.where(labels[gone] == labels[kept], "near_duplicate", "near_duplicate_label_conflict").astype(object)
    scores = np.linalg.norm(views[:, gone] - base[kept][None], axis=2).min(axis=0) / g.scale if len(gone) else []
    removed = removed_frame(np.asarray(ids, dtype=object)[gone], reasons, scores)
    return StepResult(removed=removed, metadata={
        "groups": int((g.sizes > 1).sum()),
        "largest_group": int(g.sizes.max()) if len(g.sizes) else 0,
        "views": int(len(views)),
        "median_nn_distance": round(g.scale, 5),
        "nn_sample": g.nn_rows,
        "radius": round(g.radius, 5),
        **{k: round(v, 5) for k, v in g.full.items()},
        **g.counts,
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


@dataclass
class NearIndex:
    """What the incremental index keeps: the step input's views on its basis, the radii and the groups
    (with `keep="first"`, a group's survivor is its first member), and the input's pixels for the
    full-resolution check (`positions` into the dataset until `freeze` looks them up)."""

    basis: PCA
    radius: float
    scale: float  # the median nearest-neighbour distance the radius was measured in
    full_radius: float  # the radius of the full-resolution check
    views: np.ndarray  # (V, n_old, k) views of the old step input, in dataset order
    positions: np.ndarray  # dataset rows of the old step input
    comp: np.ndarray  # old group of each row of `views`
    survivor: np.ndarray  # row of each old group's survivor
    comp_label: np.ndarray  # label of each old group's survivor
    pixels: np.ndarray | None = None  # (n_old, H, W, C) the old step input's images, set by `freeze`


def run(params: NearDedupParams, inputs: StepInputs) -> StepResult:
    """Raw (default): images as views with one-pixel shifts, each pair confirmed at full resolution; the
    state the index keeps is those views, radii and groups. Texts and tables: their own search
    (core/kinds/near_groups.py). `embedding: representation`: the representation's embeddings, no pixel
    check (and no incremental state)."""
    learned = inputs.embeddings(params.embedding)
    if learned is None and inputs.kind != "image":
        return _kind_run(params, inputs)
    if learned is not None:  # semantic closeness: no pixel check
        result = inputs.supply(find_near_duplicates)(inputs.ids, learned[None], inputs.labels, params.threshold,
                                                     params.keep)
        result.state_note = "incremental pruning needs near_deduplicated.embedding='raw'"
    else:
        result, groups, views, basis = _pixel_groups(params, inputs)
        if groups is None:  # threshold 0 (or a single sample): new samples are not compared either
            pass
        elif params.keep != "first":
            result.state_note = ("incremental pruning needs near_deduplicated.keep='first' (a 'most_typical' "
                                 "survivor moves whenever a group gains a member)")
        else:
            first = pd.Series(np.arange(len(groups.comp))).groupby(groups.comp).min().to_numpy()
            result.state = NearIndex(basis=basis, radius=groups.radius, scale=groups.scale,
                                     full_radius=groups.full_radius, views=views, positions=inputs.positions,
                                     comp=groups.comp, survivor=first, comp_label=inputs.labels[first])
    result.metadata["embedding"] = params.embedding
    return result


def _pixel_groups(params: NearDedupParams, inputs: StepInputs):
    """(result, groups, views, basis) of the pixel search; groups is None when nothing is compared."""
    images = inputs.images
    basis = fit_views_basis(images, params.n_components, params.seed)
    views = inputs.supply(project_views)(images, basis)
    if len(inputs.ids) < 2 or params.threshold == 0:
        return StepResult(removed=removed_frame(), metadata={"groups": 0}), None, views, basis
    groups = near_duplicate_groups(views, params.threshold, params.keep, inputs.mapper, images=images)
    return group_result(inputs.ids, inputs.labels, views, groups), groups, views, basis


def _kind_run(params: NearDedupParams, inputs: StepInputs) -> StepResult:
    """Texts and tables: their own pair search, groups, keep the first (core/kinds/near_groups.py)."""
    from prune_dagster.core.kinds import near_groups

    if inputs.kind == "text":
        result, state = near_groups.text_groups(inputs.ids, inputs.content, inputs.labels, params.text_jaccard,
                                                params.num_perm, params.seed, inputs.mapper)
    else:
        result, state = near_groups.table_groups(inputs.ids, inputs.content, inputs.labels, params.table_tolerance,
                                                 inputs.positions, inputs.mapper)
    result.state = state
    result.metadata.update(embedding=params.embedding, keep="first")  # the first of each group, whatever `keep`
    return result


def freeze(state: Any, old: OldRun) -> Any:
    """The old input's pixels or table rows, looked up by position (nothing recomputed)."""
    if isinstance(state, NearIndex):
        return replace(state, pixels=np.asarray(old.dataset.images[state.positions], dtype=np.float32))
    if state.positions is not None:  # a table's old rows
        return replace(state, index=content_of(old.dataset, state.positions))
    return state


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


def decide(frozen: Any, params: NearDedupParams, batch: NewBatch, mapper: Mapper = serial_map) -> None:
    """New samples within the radii of an old group or of an earlier new sample are removed; a new
    sample that would join two old groups needs a full prune (it would remove an old survivor)."""
    if not isinstance(frozen, NearIndex):  # texts, tables
        from prune_dagster.core.kinds import near_groups

        if batch.kind == "text":
            near_groups.decide_texts(frozen, batch, mapper)
        else:
            near_groups.decide_rows(frozen, params.table_tolerance, batch, mapper)
        return
    live = batch.live()
    if not len(live) or params.threshold == 0:
        return
    new_images = np.asarray(batch.images[live], dtype=np.float32)
    new_views = project_views(new_images, frozen.basis, mapper=mapper)
    m = len(live)
    old_comp, new_of_old = _links_to_old(frozen, new_views, new_images, mapper)
    i2, j2, _ = linked_pairs(new_views, frozen.radius, mapper, new_images, frozen.full_radius)
    n_old_comp = int(frozen.comp.max()) + 1 if len(frozen.comp) else 0
    has_old, old_group, first_new = merge_new(m, old_comp, new_of_old, i2, j2, n_old_comp)
    gone = has_old | (first_new != np.arange(m))
    labels = batch.labels[live]
    ref_label = np.where(has_old, frozen.comp_label[old_group], labels[first_new])
    reason = np.where(labels == ref_label, "near_duplicate", "near_duplicate_label_conflict").astype(object)
    old_base = (np.asarray(frozen.views[0])[frozen.survivor[old_group]] if len(frozen.survivor)
                else np.zeros_like(new_views[0]))
    kept_base = np.where(has_old[:, None], old_base, new_views[0][first_new])
    score = np.linalg.norm(new_views - kept_base[None], axis=2).min(axis=0) / frozen.scale
    batch.drop(live[gone], reason[gone], score[gone])
