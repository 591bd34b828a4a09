"""Outliers: kNN distance, IsolationForest or LocalOutlierFactor on the embedding, with a robust automatic threshold.

Default `knn` (mean distance to the 20 nearest neighbours; the asset embeds with 64 PCA components,
all of a digit's pixels) with the threshold at robust z > 4. On dirty digits (benchmarks/defects.py,
2% planted outliers) it found every noise and inverted image and 85% of the foreign patterns, and
removed no clean digit (F1 0.91 on noise + inverted, where its other removals are near duplicates
shifted by one pixel that plain-PCA near-duplicate search leaves in; 0.95-0.97 once those are
gone). IsolationForest on 32 components found half of the outliers (F1 0.57) and LOF missed the
inverted images, which lie in a dense group of their own.

Scale: every model sees at most `reference_rows` samples (a seeded uniform sample of the current
set); all rows are then scored against it in row blocks through `mapper`. A sample that is itself in
the reference is not its own neighbour (excluded by position, not by distance 0). With n <=
`reference_rows` the reference is the whole set and the scores are those of fitting on all of it
(bit for bit, except that with exact copies present the sample itself is dropped rather than the
first zero-distance neighbour, which differs by rounding). A uniform sample keeps relative
densities, so kNN distance to it ranks samples like kNN with a proportionally larger k on the full
set. On digit-like data (tiled digits, 1% planted noise / inverted / foreign images) knn found
outliers with F1 0.964 at 10k (whole set), 0.963 at 100k and 0.948 at 1M with the 20k reference;
at 100k a 10k reference gave 0.954, 5k 0.944, and exact kNN over all 100k only 0.862. kNN search
is sklearn's exact brute force (float64, same bits for any block size or thread count): faiss
IndexFlatL2 used as much CPU (one thread, 32k queries against 20k rows: 2.9 s against 3.0 s),
computes in float32 and changed its results with the query block size.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.infra.parallel import BLOCK_ROWS, Mapper, row_blocks, serial_map
from prune_dagster.core.ledger import StepResult, removed_frame

METHODS = ("knn", "isolation_forest", "lof", "none")
# Rows every model is fitted on / compared against: 1M rows cost ~90 CPU-s of kNN search (~1 min on
# 2 cores); smaller references found fewer outliers (module docstring).
REFERENCE_ROWS = 20_000


def reference_positions(n: int, reference_rows: int = REFERENCE_ROWS, seed: int = 0) -> np.ndarray:
    """Sorted positions of the reference sample: all of 0..n-1 when n <= `reference_rows`."""
    if reference_rows < 2:
        raise ConfigError(f"reference_rows={reference_rows}; expected at least 2")
    if n <= reference_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, reference_rows, replace=False))


def _own_reference_position(start: int, stop: int, ref_positions: np.ndarray) -> np.ndarray:
    """For rows start..stop-1: their position in the reference, or -1 if they are not in it."""
    rows = np.arange(start, stop)
    at = np.minimum(np.searchsorted(ref_positions, rows), len(ref_positions) - 1)
    return np.where(ref_positions[at] == rows, at, -1)


def _knn_block(item: tuple[int, np.ndarray], *, index: NearestNeighbors, ref_positions: np.ndarray) -> np.ndarray:
    """Mean distance of each row of the block to its k nearest reference samples other than itself."""
    start, block = item
    dist, idx = index.kneighbors(block)  # k + 1 columns
    own = _own_reference_position(start, start + len(block), ref_positions)
    drop = idx == own[:, None]  # the row itself, where it is in the reference
    drop[~drop.any(axis=1), -1] = True  # otherwise the farthest of the k + 1
    return dist[~drop].reshape(len(dist), -1).mean(axis=1)


def _forest_block(item: tuple[int, np.ndarray], *, forest: IsolationForest) -> np.ndarray:
    return -forest.score_samples(item[1])


def _lof_block(item: tuple[int, np.ndarray], *, lof: LocalOutlierFactor, ref_positions: np.ndarray) -> np.ndarray:
    """Reference rows keep their factor from the fit (computed without themselves); others are scored
    as new samples against the reference."""
    start, block = item
    own = _own_reference_position(start, start + len(block), ref_positions)
    out = np.empty(len(block))
    inside = own >= 0
    out[inside] = -lof.negative_outlier_factor_[own[inside]]
    if not inside.all():
        out[~inside] = -lof.score_samples(block[~inside])
    return out


def anomaly_scores(embedding: np.ndarray, method: str, seed: int = 0, n_neighbors: int = 20,
                   reference_rows: int = REFERENCE_ROWS, mapper: Mapper = serial_map,
                   block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """Higher = more anomalous. `knn`: mean distance to the `n_neighbors` nearest other samples.

    Models are fitted on at most `reference_rows` samples (seeded; all of them when n is at most
    that); every row is scored in blocks of `block_rows` through `mapper`."""
    if method not in METHODS or method == "none":
        raise ConfigError(f"method={method!r}; expected one of {METHODS[:-1]}")
    ref_positions = reference_positions(len(embedding), reference_rows, seed)
    reference = embedding[ref_positions] if len(ref_positions) < len(embedding) else embedding
    items = [(s, embedding[s:e]) for s, e in row_blocks(len(embedding), block_rows)]
    k = max(1, min(n_neighbors, len(reference) - 1))
    if method == "knn":
        index = NearestNeighbors(n_neighbors=k + 1).fit(reference)
        blocks = mapper(_knn_block, items, {"index": index, "ref_positions": ref_positions})
    elif method == "isolation_forest":
        forest = IsolationForest(n_estimators=200, random_state=seed).fit(reference)
        blocks = mapper(_forest_block, items, {"forest": forest})
    else:
        lof = LocalOutlierFactor(n_neighbors=k, novelty=True).fit(reference)
        blocks = mapper(_lof_block, items, {"lof": lof, "ref_positions": ref_positions})
    return np.concatenate(blocks) if blocks else np.empty(0)


def robust_threshold(scores: np.ndarray, z_threshold: float) -> float:
    """median + z × 1.4826 × MAD of the scores (the automatic threshold)."""
    med = float(np.median(scores))
    mad = float(np.median(np.abs(scores - med))) * 1.4826 or 1e-12
    return med + z_threshold * mad


def find_outliers(ids: np.ndarray, embedding: np.ndarray, method: str = "knn",
                  contamination: float = 0.0, z_threshold: float = 4.0, seed: int = 0,
                  reference_rows: int = REFERENCE_ROWS, mapper: Mapper = serial_map,
                  block_rows: int = BLOCK_ROWS) -> StepResult:
    """Flag the samples whose anomaly score is extreme.

    With `contamination` = 0 (default) the threshold is automatic: median + z × 1.4826 × MAD of the
    scores, so clean data loses (almost) nothing; a contamination in (0, 0.5) removes that share.
    `reference_rows` (default REFERENCE_ROWS = 20,000) bounds the sample the model is fitted on;
    below it every sample is compared with every other.
    """
    if method not in METHODS:
        raise ConfigError(f"method={method!r}; expected one of {METHODS}")
    if not 0.0 <= contamination < 0.5:
        raise ConfigError(f"contamination={contamination}; expected 0 (automatic) or a share in (0, 0.5)")
    if method == "none" or len(ids) < 3:
        return StepResult(removed=removed_frame(), metadata={"threshold": None})
    scores = anomaly_scores(embedding, method, seed, reference_rows=reference_rows, mapper=mapper,
                            block_rows=block_rows)
    if contamination > 0:
        threshold = float(np.quantile(scores, 1.0 - contamination))
        out = scores > threshold
    else:
        threshold = robust_threshold(scores, z_threshold)
        out = scores > threshold
    robust_z = (scores - np.median(scores)) / (np.median(np.abs(scores - np.median(scores))) * 1.4826 or 1e-12)
    removed = removed_frame(np.asarray(ids, dtype=object)[out], f"outlier_{method}", robust_z[out])
    meta = {"threshold": round(threshold, 5), "method": method,
            "reference_rows": int(min(len(ids), reference_rows))}
    return StepResult(removed=removed, metadata=meta)
