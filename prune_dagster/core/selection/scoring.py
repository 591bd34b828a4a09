"""Score-based pruning to a retained fraction: random, EL2N, forgetting, prototype distance and CCS.

Every strategy reduces to a per-sample difficulty score (higher = harder) plus a selection rule:

=================  ===========================================================  =======================
strategy           score                                                        keeps
=================  ===========================================================  =======================
random             uniform draw in [0, 1) (seeded)                              highest (= uniform)
el2n               ||softmax - onehot||_2 after `score_epochs`, seed-averaged   highest (hardest)
forgetting         correct→wrong flips across epochs (never learned = maximal)  highest
prototype_easy     distance to the nearest per-class k-means centroid           lowest (prototypical)
prototype_hard     same score as prototype_easy                                highest (atypical)
ccs                EL2N                                                         all strata, see below
=================  ===========================================================  =======================

With `per_class` the budget is round(fraction * n_c) in every class (at least one per non-empty
class), so pruning never drops a class; otherwise round(fraction * n) over the whole set.
Positions index the arrays given in; the caller maps them back to ids. No Dagster here.
The settings (`ScoreParams`, `PruneParams`) live in `strategies.py`, the selection rules (budgets,
ranking, CCS strata) in `select.py`; both are re-exported here.

Scale: every fit is bounded by `fit_sample` (default 50,000; 0 = no bound). When N is larger, the
scoring runs (EL2N, forgetting, CCS, CNN prototypes) train on one seeded, class-stratified subset of
`fit_sample` samples and then score all N by batched inference; each class's prototype k-means is
fitted on at most fit_sample / classes of its members, and all members are measured to its centroids.
Cost: O(fit_sample) training plus O(N) inference (forgetting: `score_seeds * score_epochs` inference
passes over N, one per epoch, since every epoch's correctness enters the count). With N <= fit_sample
nothing changes: same code path, same batches, bit-identical scores (tests/test_scoring_scale.py).

Why EL2N from a model trained on a subset still scores the samples it never saw: EL2N is read
after a few epochs (Paul et al. 2021), before the network memorises its training samples, so its
error on seen and unseen samples of the same distribution is close; the score measures how far a
sample is from what its class looks like, which a model fitted on a representative (stratified)
sample learns about as well as one fitted on everything. Measured on 10,000 digit-like samples
(the bundled digits tiled with N(0, 0.05) noise, 5% labels flipped; score_epochs=5, score_seeds=3):

=========================================  ==================  ==================
                                           fit_sample=2,500    fit_sample=5,000
=========================================  ==================  ==================
Spearman, capped vs uncapped EL2N          0.75                0.82
  inside / outside the fitted subset       0.75 / 0.76         0.81 / 0.82
mean EL2N inside / outside the subset      0.172 / 0.191       0.172 / 0.177
share kept at fraction 0.8, in / out       0.796 / 0.802       0.802 / 0.798
flipped-label AUC, capped (uncapped 1.0)   1.000               1.000
=========================================  ==================  ==================

For scale: two uncapped runs with different seeds agree at Spearman 0.88 (0.88 inside and outside).
Unseen samples are ranked as well as seen ones, including the 2,005 whose source digit had no
noisy copy in the 2,500 (Spearman 0.75), and selection does not favour either; agreement with the
uncapped ranking rises with the subset size. Reading EL2N later breaks this: 20 epochs on
the 2,500 (as many steps as 5 epochs on all 10,000) widens the seen/unseen gap to 0.122 / 0.156 and
drops Spearman to 0.67, which is why the cap keeps `score_epochs` rather than matching steps.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn

from prune_dagster.core.embedding.pca import pca_embed
from prune_dagster.core.errors import DatasetError
from prune_dagster.core.infra.parallel import row_blocks
from prune_dagster.core.selection.select import budget, ccs_select, select_from_scores
from prune_dagster.core.selection.strategies import (
    DEFAULT_SCORING,
    EMBEDDINGS,
    STRATEGIES,
    PruneParams,
    ScoreParams,
    check_config,
    check_fraction,
    check_strategy,
)
from prune_dagster.core.training.model import PruneCNN
from prune_dagster.core.training.train import TrainParams, default_threads, to_tensor, train_any

# Re-exported: callers import the whole score-based pruning API from here.
__all__ = ["EMBEDDINGS", "STRATEGIES", "PruneParams", "ScoreParams", "ScoreParams", "budget", "ccs_select",
           "centroid_distances", "check_config", "compute_scores", "el2n_scores", "fit_subset", "forgetting_scores",
           "prune_to_fraction", "select_from_scores"]

PCA_COMPONENTS = 32


def _check_data(images: Any, labels: np.ndarray, n_classes: int) -> None:
    if (isinstance(images, np.ndarray) and images.ndim != 4) or len(images) != len(labels):
        raise DatasetError(f"images {images.shape} and labels {np.shape(labels)}: expected (N, H, W, C) and (N,)")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(f"labels must lie in [0, {n_classes}); found {labels.min()}..{labels.max()}")


# ---------------------------------------------------------------- scores


# Inference batch when scoring N > fit_sample samples: small enough that the conv activations
# (batch x 64 x 8 x 8 float32) stay below glibc's mmap threshold. From ~1,536 rows up every batch maps
# fresh pages and page faults cost as much system time as the inference itself (measured: 300k rows,
# 1 thread, batch 512: 5 s user, 0 s system; 8192: 6-9 s user, 8-12 s system). The uncapped path keeps
# predict_proba's 2048: oneDNN picks kernels by batch size, so another size would change the last bits
# of today's scores.
INFER_BATCH = 512
# Torch threads for the scoring runs unless train.set_default_threads says otherwise. Batches of 64 tiny
# images leave two threads mostly synchronising: one epoch over 10k samples took 1.9 s on one thread
# and 11.2 s on two on this 2-core machine with one other busy process (benchmarks/scale.py's setting).
SCORING_THREADS = 1
_EXACT_BATCH = 2048


def fit_subset(labels: np.ndarray, n_fit: int, seed: int) -> np.ndarray | None:
    """Positions (ascending) of a seeded, class-stratified subset of exactly `n_fit` samples.

    None when no bound applies (`n_fit` = 0 or N <= n_fit): the caller then fits on everything.
    Each class gets floor(n_fit * n_c / N) samples, the leftover going to the largest remainders.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n_fit == 0 or n <= n_fit:
        return None
    counts = np.bincount(labels)
    quota = counts * (n_fit / n)
    take = np.floor(quota).astype(np.int64)
    take[np.argsort(take - quota, kind="stable")[:n_fit - int(take.sum())]] += 1
    rng = np.random.default_rng([seed, 2])  # apart from the training and selection streams
    by_class = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    parts = [rng.choice(by_class[bounds[c]:bounds[c + 1]], size=t, replace=False)
             for c, t in enumerate(take) if t]
    return np.sort(np.concatenate(parts))


@torch.no_grad()
def _infer(model: nn.Module, images: Any, batch_size: int, embed: bool = False) -> np.ndarray:
    """Softmax probabilities (or penultimate features) of all rows, converting one batch at a time
    (`images`: pixels, or a table's or texts' `Encoded` rows)."""
    model.eval()
    width = model.fc2.in_features if embed else model.fc2.out_features
    out = np.empty((len(images), width), dtype=np.float32)
    image = isinstance(images, np.ndarray)
    for s in range(0, len(images), batch_size):
        x = to_tensor(images[s:s + batch_size]) if image else images.x[s:s + batch_size]
        out[s:s + len(x)] = (model.features(x) if embed else torch.softmax(model(x), dim=1)).numpy()
    return out


def _scoring_runs(images: np.ndarray, labels: np.ndarray, n_classes: int, config: ScoreParams, seed: int,
                  feature_mask: np.ndarray | None, track_epochs: bool, need_proba: bool = True,
                  ) -> tuple[np.ndarray | None, np.ndarray | None, list[PruneCNN]]:
    """Train `score_seeds` short runs (seeds seed+k), shared by EL2N, forgetting, CCS and CNN prototypes.

    Each run trains on `fit_subset` (all samples when N <= fit_sample) and predicts all N. Returns final
    probabilities (runs, N, C) float32 when `need_proba`, per-epoch correctness (runs, epochs, N) when
    `track_epochs` (None otherwise) and the trained models.
    """
    threads = default_threads() or SCORING_THREADS
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _scoring_runs_on(images, labels, n_classes, config, seed, feature_mask, track_epochs, need_proba,
                                threads)
    finally:
        torch.set_num_threads(previous)  # the setting is process-wide: leave later steps theirs


def _scoring_runs_on(images: np.ndarray, labels: np.ndarray, n_classes: int, config: ScoreParams, seed: int,
                     feature_mask: np.ndarray | None, track_epochs: bool, need_proba: bool, threads: int,
                     ) -> tuple[np.ndarray | None, np.ndarray | None, list[PruneCNN]]:
    subset = fit_subset(labels, config.fit_sample, seed)
    fit_x, fit_y = (images, labels) if subset is None else (images[subset], labels[subset])
    batch = _EXACT_BATCH if subset is None else INFER_BATCH
    probas = np.empty((config.score_seeds, len(labels), n_classes), dtype=np.float32) if need_proba else None
    correct = np.empty((config.score_seeds, config.score_epochs, len(labels)), dtype=bool) if track_epochs else None
    models = []
    for k in range(config.score_seeds):
        def on_epoch(epoch: int, model: PruneCNN, run: int = k) -> None:
            correct[run, epoch] = _infer(model, images, batch).argmax(1) == labels

        cfg = TrainParams(epochs=config.score_epochs, batch_size=config.batch_size, lr=config.lr,
                          seed=seed + k, threads=threads)
        result = train_any(fit_x, fit_y, n_classes, cfg, feature_mask, on_epoch=on_epoch if track_epochs else None)
        if need_proba:
            probas[k] = _infer(result.model, images, batch)
        models.append(result.model)
    return probas, correct, models


def el2n_scores(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """||p - onehot(y)||_2 per sample and run, averaged over runs. proba: (runs, N, C); range [0, √2].

    Computed in row blocks (each row's value does not depend on the blocking) so the float64 copy
    stays small at any N.
    """
    labels = np.asarray(labels, dtype=np.int64)
    eye = np.eye(proba.shape[-1], dtype=np.float64)
    out = np.empty(proba.shape[1], dtype=np.float64)
    for s, e in row_blocks(proba.shape[1]):
        diff = proba[:, s:e].astype(np.float64) - eye[labels[s:e]][None]
        out[s:e] = np.linalg.norm(diff, axis=-1).mean(axis=0)
    return out


def forgetting_scores(correct: np.ndarray) -> np.ndarray:
    """Forgetting score from per-epoch correctness (runs, epochs, N): the per-run score averaged over runs.

    Per run, integer part: correct→wrong transitions between consecutive epochs; a sample never classified
    correctly counts `epochs` (more than any learned sample can reach), as in Toneva et al.
    Fractional part (< 1, so it never reorders counts): half the share of epochs the sample was
    wrong, which breaks the large tie among unforgotten samples in favour of later-learned ones.
    """
    correct = np.asarray(correct, dtype=bool)
    epochs = correct.shape[1]
    events = (correct[:, :-1] & ~correct[:, 1:]).sum(axis=1).astype(np.float64)
    never = ~correct.any(axis=1)
    events[never] = epochs
    wrong_share = (~correct).mean(axis=1)
    return (events + 0.5 * wrong_share).mean(axis=0)


def auto_clusters(n: int) -> int:
    """Clusters per class when n_clusters = 0: ~√(n/10), so ~4 for 150 samples, ~22 for 5000."""
    return max(1, int(round(math.sqrt(n / 10.0))))


def _nearest_distance(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Euclidean distance of each row of x to its nearest centre, in row blocks of bounded memory.

    Direct differences (not the |x|^2 - 2xc + |c|^2 expansion), so each row's value is exactly the
    unblocked one.
    """
    rows = max(1, (1 << 22) // max(1, centres.size))  # ~32 MiB of float64 differences per block
    out = np.empty(len(x), dtype=np.float64)
    for s in range(0, len(x), rows):
        out[s:s + rows] = np.linalg.norm(x[s:s + rows, None, :] - centres[None, :, :], axis=-1).min(axis=1)
    return out


def centroid_distances(embedding: np.ndarray, n_clusters: int = 0, seed: int = 0,
                       fit_rows: np.ndarray | None = None) -> np.ndarray:
    """Distance of each row to its nearest k-means centroid (one class's embedding).

    Centroids holding under a quarter of an average cluster are dropped before measuring: on
    atypical data k-means++ gives a far outlier its own centroid, which would make it look prototypical.
    `fit_rows` (positions into `embedding`) bounds the k-means fit at scale: centroids are fitted on
    those rows, every row is measured. The cluster count still follows the full class size.
    """
    n = len(embedding)
    if n <= 1:
        return np.zeros(n)
    x = embedding.astype(np.float64)
    fit = x if fit_rows is None else x[fit_rows]
    k = min(n_clusters or auto_clusters(n), len(fit))
    if k <= 1:
        return np.linalg.norm(x - fit.mean(axis=0), axis=1)
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(fit)
    sizes = np.bincount(km.labels_, minlength=k)
    keep = sizes >= max(2.0, 0.25 * len(fit) / k)
    centres = km.cluster_centers_[keep] if keep.any() else fit.mean(axis=0, keepdims=True)
    return _nearest_distance(x, centres)


def _prototype_scores(images: np.ndarray, labels: np.ndarray, n_classes: int, config: ScoreParams, seed: int,
                      feature_mask: np.ndarray | None) -> np.ndarray:
    capped = 0 < config.fit_sample < len(labels)
    if config.prototype_embedding == "cnn" or not isinstance(images, np.ndarray):  # tables, texts: the model's
        one_run = config.model_copy(update={"score_seeds": 1})
        _, _, models = _scoring_runs(images, labels, n_classes, one_run, seed, feature_mask, track_epochs=False,
                                     need_proba=False)
        emb = _infer(models[0], images, INFER_BATCH if capped else _EXACT_BATCH, embed=True)
    else:
        emb = pca_embed(images, PCA_COMPONENTS, seed, feature_mask)
    groups = [m for c in range(n_classes) if len(m := np.flatnonzero(labels == c))]
    # At scale each class's k-means sees at most fit_sample / classes of its members (small classes whole).
    per_class = max(1, config.fit_sample // max(1, len(groups)))
    rng = np.random.default_rng([seed, 3])
    scores = np.zeros(len(labels))
    # k-means per class: labels are trusted at this stage, and a class's prototypes are its own.
    for members in groups:
        fit_rows = None
        if capped and len(members) > per_class:
            fit_rows = np.sort(rng.choice(len(members), size=per_class, replace=False))
        scores[members] = centroid_distances(emb[members], config.n_clusters, seed, fit_rows)
    return scores


def compute_scores(strategy: str, images: np.ndarray, labels: np.ndarray, n_classes: int,
                   config: ScoreParams = DEFAULT_SCORING, seed: int = 0,
                   feature_mask: np.ndarray | None = None) -> np.ndarray:
    """Per-sample difficulty score, float64 of length N, higher = harder (see the module table).

    random: uniform [0, 1). el2n and ccs: mean EL2N over `score_seeds` runs. forgetting: mean
    forgetting events (never learned = `score_epochs`). prototype_*: distance to the nearest
    per-class centroid in the PCA (or CNN) embedding.
    """
    check_strategy(strategy)
    check_config(config)
    labels = np.asarray(labels, dtype=np.int64)
    _check_data(images, labels, n_classes)
    n = len(labels)
    if strategy == "random":
        return np.random.default_rng(seed).random(n)
    if n == 0:
        return np.zeros(0)
    if strategy in ("el2n", "ccs"):
        proba, _, _ = _scoring_runs(images, labels, n_classes, config, seed, feature_mask, track_epochs=False)
        return el2n_scores(proba, labels)
    if strategy == "forgetting":
        _, correct, _ = _scoring_runs(images, labels, n_classes, config, seed, feature_mask, track_epochs=True,
                                      need_proba=False)
        return forgetting_scores(correct)
    return _prototype_scores(images, labels, n_classes, config, seed, feature_mask)


def prune_to_fraction(strategy: str, images: np.ndarray, labels: np.ndarray, n_classes: int,
                      fraction: float, seed: int = 0, config: ScoreParams = DEFAULT_SCORING,
                      feature_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Keep `fraction` of the set by `strategy`: (kept positions sorted ascending int64, scores float64).

    Scores are computed even at fraction 1.0 (which keeps everything) so the caller can always log them.
    """
    check_strategy(strategy)
    check_config(config)
    check_fraction(fraction)
    scores = compute_scores(strategy, images, labels, n_classes, config, seed, feature_mask)
    kept = select_from_scores(strategy, scores, labels, n_classes, fraction, seed, config)
    return kept, scores
