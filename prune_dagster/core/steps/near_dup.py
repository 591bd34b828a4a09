"""Near duplicates: nearest neighbours within a radius, union-find into groups, keep one per group."""

from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import connected_components
from sklearn.neighbors import NearestNeighbors

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.ledger import StepResult, removed_frame

KEEP_POLICIES = ("first", "most_typical")


def find_near_duplicates(ids: np.ndarray, embedding: np.ndarray, labels: np.ndarray,
                         threshold: float = 0.25, keep: str = "first") -> StepResult:
    """Pairs closer than `threshold` × (median nearest-neighbour distance) are near duplicates.

    The radius is relative, so one default works across datasets and embeddings. Connected
    components of the radius graph (scipy's union-find) form the groups; `keep` picks the survivor:
    `first` in dataset order, or `most_typical` (the member closest to its group's mean). A removed
    sample whose label differs from the survivor's is reported as `near_duplicate_label_conflict`.
    """
    if keep not in KEEP_POLICIES:
        raise ConfigError(f"keep={keep!r}; expected one of {KEEP_POLICIES}")
    if threshold < 0:
        raise ConfigError(f"threshold={threshold}; expected a non-negative multiple of the median NN distance")
    n = len(ids)
    if n < 2 or threshold == 0:
        return StepResult(removed=removed_frame(), metadata={"groups": 0})
    nn = NearestNeighbors(n_neighbors=2).fit(embedding)
    dist, _ = nn.kneighbors(embedding)
    nn_dist = dist[:, 1]
    scale = float(np.median(nn_dist[nn_dist > 0])) if (nn_dist > 0).any() else 1.0
    radius = threshold * scale
    graph = nn.radius_neighbors_graph(embedding, radius=radius, mode="distance")
    n_groups, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp, minlength=n_groups)
    removed_pos, reasons, scores = [], [], []
    for g in np.flatnonzero(sizes > 1):
        members = np.flatnonzero(comp == g)
        if keep == "first":
            survivor = members[0]
        else:
            centre = embedding[members].mean(axis=0)
            survivor = members[np.argmin(np.linalg.norm(embedding[members] - centre, axis=1))]
        for m in members[members != survivor]:
            removed_pos.append(m)
            reasons.append("near_duplicate" if labels[m] == labels[survivor] else "near_duplicate_label_conflict")
            scores.append(float(np.linalg.norm(embedding[m] - embedding[survivor]) / scale))
    removed = removed_frame(np.asarray(ids, dtype=object)[removed_pos], reasons, scores)
    return StepResult(removed=removed, metadata={
        "groups": int((sizes > 1).sum()),
        "median_nn_distance": round(scale, 5),
        "radius": round(radius, 5),
    })
