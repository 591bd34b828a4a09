"""Outliers: kNN distance, IsolationForest or LocalOutlierFactor on the embedding, with a robust automatic threshold.

Default `knn`: mean distance to the k nearest neighbours (k = max(20, 2.5% of the reference), at most
256; see NEIGHBOR_SHARE) in the asset's 64-component PCA embedding, threshold at robust z > 4. On dirty
digits (benchmarks/defects.py, 2% planted outliers, k = 20 at that size) it found every noise and
inverted image and 85% of the foreign patterns, and removed no clean digit (F1 0.91 on noise + inverted,
where its other removals are near duplicates shifted by one pixel that plain-PCA near-duplicate search
leaves in; 0.95-0.97 once those are gone). IsolationForest on 32 components found half of the outliers
(F1 0.57) and LOF missed the inverted images, which lie in a dense group of their own.

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

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

from prune_dagster.core.embedding.raw_space import RawSpace
from prune_dagster.core.errors import ConfigError
from prune_dagster.core.infra.parallel import BLOCK_ROWS, Mapper, row_blocks, serial_map
from prune_dagster.core.kinds.text_tokens import unknown_words
from prune_dagster.core.ledger import StepResult, removed_frame
from prune_dagster.core.params import Params
from prune_dagster.core.steps.base import StepInputs
from prune_dagster.core.steps.frozen import NewBatch, OldRun

METHODS = ("knn", "isolation_forest", "lof", "none")
# Neighbours of the kNN score (and of LOF): at least N_NEIGHBORS, and at least NEIGHBOR_SHARE of the
# reference. A group of similar outliers (a batch of inverted or blank scans) is its own neighbourhood
# while k is not well above its size: on real MNIST with 40 inverted and 40 noise images planted
# among 8,160 (benchmarks/real.py --part defects) k = 20 found 11-13 of the 80, k = 60-120 found
# 40, k = 200 all 80; no k from 20 to 200 flagged a clean digit. 2.5% gives k = 206 there,
# 20 below 800 samples. At most MAX_NEIGHBORS: the search's cost grows with k (one thread, 32k queries
# against the 20,000-row reference: 4.2 s at k = 20, 6.5 s at 200, 13.3 s at 500; k = 500 made the
# step 268 s of a 456 s prune of 1M rows), and 256 of the 20,000 still covers a group of 1.3%.
N_NEIGHBORS = 20
NEIGHBOR_SHARE = 0.025
MAX_NEIGHBORS = 256
# Query rows per kneighbors call inside a block: bounds its (rows, k + 1) distances and indices.
KNN_CHUNK = 4096
# A text of random letters sits among real texts in the learned space (its words all map to the unknown
# token), so texts are also judged by their words: on Rotten Tomatoes 0.8 of words found in no other text
# flagged every planted random string and, with at least 2 such words, no real snippet (one-word ones
# like "Touché!" have 1); benchmarks/kinds_defects.py.
MIN_UNKNOWN_WORDS = 2
SCORE_MEANING = ("robust z of the anomaly score: (score - median) / (1.4826 x MAD) over the step's input; "
                 "reason unknown_words (texts): the share of the text's words found in no other text")
DESCRIPTION = ("Removes samples far from the rest of the data: by default the mean distance to the k nearest "
               "neighbours (k = max(20, 2.5% of the reference), at most 256) in a PCA embedding of the pixels (or "
               "the shared representation's embeddings), above an automatic robust threshold (IsolationForest and "
               "LOF are options); texts: those most of whose words occur in no other text (kNN in the learned "
               "embeddings is an option).")
REMOVES = "samples far from every other (noise, inverted or foreign images; extreme rows); texts of unshared words"
KEY_SETTINGS = ("method", "z_threshold", "embedding", "text_unknown_share")


class OutlierParams(Params):
    """Outliers: samples far from the rest of the data in a PCA embedding."""

    enabled: bool = Field(default=True, description="false: the step passes its input through unchanged")
    method: Literal[("auto", *METHODS)] = Field(
        default="auto", description="knn: mean distance to the k nearest neighbours, k = max(20, 2.5% of the "
        "reference), at most 256; isolation_forest; lof; none; auto: knn for images and tables, none for texts")
    contamination: float = Field(default=0.0, ge=0.0, lt=0.5, description="share to remove; 0 = automatic "
                                                                           "robust threshold (z_threshold)")
    z_threshold: float = Field(default=0.0, ge=0.0, le=100.0, description="automatic threshold: remove scores "
                               "above median + z x 1.4826 x MAD; 0 = the kind's (image 4, table 8, text 4)")
    n_components: int = Field(default=64, ge=1, le=4096, description="PCA components of the embedding")
    seed: int = Field(default=0, ge=0, description="seed of the PCA fit and reference samples")
    text_unknown_share: float = Field(default=0.8, ge=0.0, le=1.0, description="texts: also remove a text with "
                                      f"{MIN_UNKNOWN_WORDS} or more words found in no other text that make up at "
                                      "least this share of its words (reason unknown_words); 0 = off")
    embedding: Literal["auto", "raw", "representation"] = Field(
        default="auto", description="raw: a PCA of the raw features (pixels; standardised columns with one-hot "
        "categories; TF-IDF through SVD for texts); representation: the shared representation's embeddings "
        "(learned or provided), used as they are; auto: raw for images and tables, representation for texts")
    # Real tables have heavy-tailed columns (UCI Adult's capital gain): z > 4 flagged 185 of its 32,561 real
    # rows (0.57%, legitimate rare values), z > 8 flagged 10; planted outliers scored z > 1,500
    # (benchmarks/kinds_defects.py). Images and texts keep 4 (benchmarks/defects.py, real_text.py).
    # Texts: kNN in the text CNN's embeddings flagged 76 real Rotten Tomatoes reviews (the most confident
    # ordinary ones: "Pretty good little movie.") and none of the planted random strings, which their
    # words find (text_unknown_share); so texts use the words alone unless knn is asked for.
    KIND_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "image": {"method": "knn", "z_threshold": 4.0}, "table": {"method": "knn", "z_threshold": 8.0},
        "text": {"method": "none", "z_threshold": 4.0}}


PARAMS = OutlierParams
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
    out = np.empty(len(block))
    for s in range(0, len(block), KNN_CHUNK):
        dist, idx = index.kneighbors(block[s:s + KNN_CHUNK])  # k + 1 columns
        own = _own_reference_position(start + s, start + s + len(dist), ref_positions)
        drop = idx == own[:, None]  # the row itself, where it is in the reference
        drop[~drop.any(axis=1), -1] = True  # otherwise the farthest of the k + 1
        out[s:s + len(dist)] = dist[~drop].reshape(len(dist), -1).mean(axis=1)
    return out


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


def neighbour_count(n_reference: int, n_neighbors: int = N_NEIGHBORS, share: float = NEIGHBOR_SHARE) -> int:
    """The k the scores use: the larger of `n_neighbors` and `share` of the reference (at most
    MAX_NEIGHBORS), and fewer when the reference is smaller."""
    k = max(n_neighbors, min(math.ceil(share * n_reference), MAX_NEIGHBORS))
    return max(1, min(k, n_reference - 1))


def anomaly_scores(embedding: np.ndarray, method: str, seed: int = 0, n_neighbors: int = N_NEIGHBORS,
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
    k = neighbour_count(len(reference), n_neighbors)
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


def robust_scale(scores: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 × MAD) of the scores: the centre and unit of the robust z."""
    med = float(np.median(scores))
    return med, float(np.median(np.abs(scores - med))) * 1.4826 or 1e-12


def robust_threshold(scores: np.ndarray, z_threshold: float) -> float:
    """median + z × 1.4826 × MAD of the scores (the automatic threshold)."""
    med, unit = robust_scale(scores)
    return med + z_threshold * unit


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
    return flag_scores(ids, scores, method, contamination, z_threshold, reference_rows)[0]


def flag_scores(ids: np.ndarray, scores: np.ndarray, method: str, contamination: float, z_threshold: float,
                reference_rows: int = REFERENCE_ROWS) -> tuple[StepResult, float, float, float]:
    """(result, threshold, median, unit): the samples whose score passes the threshold, scored by robust z."""
    med, unit = robust_scale(scores)
    if contamination > 0:
        threshold = float(np.quantile(scores, 1.0 - contamination))
    else:
        threshold = med + z_threshold * unit
    out = scores > threshold
    robust_z = (scores - med) / unit
    removed = removed_frame(np.asarray(ids, dtype=object)[out], f"outlier_{method}", robust_z[out])
    meta = {"threshold": round(threshold, 5), "method": method,
            "reference_rows": int(min(len(ids), reference_rows))}
    return StepResult(removed=removed, metadata=meta), threshold, med, unit


@dataclass
class OutlierIndex:
    """What the incremental index keeps: the old raw-feature space (None: the learned representation,
    whose fold models `freeze` attaches as `embed`), the old reference sample's embedding and the old
    automatic threshold, with the median and unit of the old scores (for the robust z)."""

    space: RawSpace | None
    reference: np.ndarray | None  # None: no kNN (method none), only the texts' words
    threshold: float
    median: float
    unit: float
    embed: Any = None  # content -> embeddings of new samples (set by `freeze`)
    vocabulary: frozenset[str] | None = None  # texts: the words of the old input (unknown_words)


# Which embedding `auto` means for each kind (measured: benchmarks/real_text.py, real_table.py).
AUTO_EMBEDDING = {"image": "raw", "table": "raw", "text": "representation"}


def embedding_of(params: OutlierParams, kind: str) -> str:
    return AUTO_EMBEDDING[kind] if params.embedding == "auto" else params.embedding


def run(params: OutlierParams, inputs: StepInputs) -> StepResult:
    """Scores on the representation's embeddings or a PCA of the pixels; with pixels, kNN and the
    automatic threshold, the state the index keeps is the basis, the reference and the threshold."""
    if not 0.0 <= params.contamination < 0.5:
        raise ConfigError(f"contamination={params.contamination}; expected 0 (automatic) or a share in (0, 0.5)")
    embedding = embedding_of(params, inputs.kind)
    meta = {"embedding": embedding}
    if params.method == "none" or len(inputs.ids) < 3:
        result = StepResult(removed=removed_frame(), metadata={"threshold": None, **meta})
        vocabulary = _unknown_words(result, params, inputs) if len(inputs.ids) >= 3 else None
        if vocabulary is not None:  # the index decides new texts by their words alone
            result.state = OutlierIndex(space=None, reference=None, threshold=np.inf, median=0.0, unit=1.0,
                                        vocabulary=vocabulary)
        return result
    emb = inputs.embeddings(embedding)
    space = None
    if emb is None:
        space = RawSpace.fit(inputs.kind, inputs.content, params.n_components, params.seed)
        emb = space.transform(inputs.content, inputs.mapper)
    scores = inputs.supply(anomaly_scores)(emb, params.method, params.seed)
    result, threshold, med, unit = flag_scores(inputs.ids, scores, params.method, params.contamination,
                                               params.z_threshold)
    result.metadata.update(meta)
    vocabulary = _unknown_words(result, params, inputs)
    learned = inputs.representation is not None and bool(inputs.representation.models)
    if space is None and not learned:  # provided embeddings: new samples have none of their own
        result.state_note = "incremental pruning needs outliers_removed.embedding 'raw' or a learned representation"
    elif params.method != "knn" or params.contamination != 0:
        result.state_note = (f"incremental pruning supports outliers_removed.method='knn' with the automatic "
                             f"threshold; this prune used {params.method!r}, contamination {params.contamination}")
    else:
        result.state = OutlierIndex(space=space, reference=emb[reference_positions(len(emb), seed=params.seed)],
                                    threshold=threshold, median=med, unit=unit, vocabulary=vocabulary)
    return result


def _unknown_flags(share: np.ndarray, count: np.ndarray, params: OutlierParams) -> np.ndarray:
    return (share >= params.text_unknown_share) & (count >= MIN_UNKNOWN_WORDS)


def _unknown_words(result: StepResult, params: OutlierParams, inputs: StepInputs) -> frozenset[str] | None:
    """Texts: add the texts made of words found in no other text to `result` (those not already removed)."""
    if inputs.kind != "text" or params.text_unknown_share <= 0:
        return None
    share, count, vocabulary = unknown_words(inputs.content)
    flagged = _unknown_flags(share, count, params) & ~np.isin(inputs.ids, result.removed["id"].to_numpy())
    extra = removed_frame(np.asarray(inputs.ids, dtype=object)[flagged], "unknown_words", share[flagged])
    result.removed = pd.concat([result.removed, extra], ignore_index=True) if len(extra) else result.removed
    result.metadata["unknown_words"] = int(flagged.sum())
    return vocabulary


def freeze(state: OutlierIndex, old: OldRun) -> OutlierIndex:
    """New samples are embedded as the old were: through the raw space, or the representation's fold models."""
    if state.reference is None:
        return state
    if state.space is not None:
        return replace(state, embed=state.space.transform)
    return replace(state, embed=old.representation.predictor().embed)


def decide(frozen: OutlierIndex | None, params: OutlierParams, batch: NewBatch,
           mapper: Mapper = serial_map) -> None:
    """A new sample whose kNN score against the old reference passes the old threshold is removed."""
    live = batch.live()
    if frozen is None or not len(live):
        return
    if frozen.reference is not None:
        emb = frozen.embed(batch.take(live), mapper)
        k = neighbour_count(len(frozen.reference))
        scores = NearestNeighbors(n_neighbors=k).fit(frozen.reference).kneighbors(emb)[0].mean(axis=1)
        out = scores > frozen.threshold
        batch.drop(live[out], f"outlier_{params.method}", (scores[out] - frozen.median) / frozen.unit)
        live = batch.live()
    if frozen.vocabulary is not None and params.text_unknown_share > 0 and len(live):
        share, count, _ = unknown_words(batch.take(live), frozen.vocabulary)
        out = _unknown_flags(share, count, params)
        batch.drop(live[out], "unknown_words", share[out])
