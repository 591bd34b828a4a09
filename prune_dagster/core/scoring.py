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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from sklearn.cluster import KMeans

from prune_dagster.core.embed import pca_embed
from prune_dagster.core.errors import ConfigError, DatasetError
from prune_dagster.core.model import PruneCNN
from prune_dagster.core.train import TrainConfig, default_threads, predict_proba, to_tensor, train_cnn

STRATEGIES: tuple[str, ...] = ("random", "el2n", "forgetting", "prototype_easy", "prototype_hard", "ccs")
EMBEDDINGS: tuple[str, ...] = ("pca", "cnn")

# Strategies that keep the lowest scores; every other one keeps the highest, except ccs (strata).
_KEEP_LOWEST = frozenset({"prototype_easy"})
PCA_COMPONENTS = 32


@dataclass(frozen=True)
class ScoreConfig:
    score_epochs: int = 5  # epochs of each short scoring training run (EL2N, forgetting)
    score_seeds: int = 3  # scoring runs averaged (EL2N and forgetting), seeds seed .. seed+score_seeds-1
    per_class: bool = True  # keep round(fraction * n_c) in every class (stratified budget)
    n_clusters: int = 0  # prototype: k-means clusters per class, 0 = automatic
    ccs_beta: float = 0.1  # CCS: share of hardest samples dropped first (mislabelled/ambiguous)
    ccs_strata: int = 50  # CCS: number of score strata
    batch_size: int = 64
    lr: float = 1e-3
    prototype_embedding: str = "pca"  # "pca": masked pixels → PCA; "cnn": penultimate layer of a scoring run


def check_config(config: ScoreConfig) -> None:
    """Raise ConfigError naming the first setting out of range."""
    checks = (
        (config.score_epochs >= 1, f"score_epochs={config.score_epochs}; expected an integer >= 1"),
        (config.score_seeds >= 1, f"score_seeds={config.score_seeds}; expected an integer >= 1"),
        (config.n_clusters >= 0, f"n_clusters={config.n_clusters}; expected 0 (automatic) or >= 1"),
        (0.0 <= config.ccs_beta < 1.0, f"ccs_beta={config.ccs_beta}; expected a share in [0, 1)"),
        (config.ccs_strata >= 1, f"ccs_strata={config.ccs_strata}; expected an integer >= 1"),
        (config.batch_size >= 1, f"batch_size={config.batch_size}; expected an integer >= 1"),
        (config.lr > 0, f"lr={config.lr}; expected a learning rate > 0"),
        (config.prototype_embedding in EMBEDDINGS,
         f"prototype_embedding={config.prototype_embedding!r}; expected one of {', '.join(EMBEDDINGS)}"),
    )
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy={strategy!r}: unknown pruning strategy; expected one of {', '.join(STRATEGIES)}")


def _check_fraction(fraction: float) -> None:
    try:
        ok = 0.0 < float(fraction) <= 1.0  # NaN fails both comparisons
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"fraction={fraction!r}: the retained fraction must be in (0, 1]; 1.0 keeps everything")


def _check_data(images: np.ndarray, labels: np.ndarray, n_classes: int) -> None:
    if images.ndim != 4 or len(images) != len(labels):
        raise DatasetError(f"images {images.shape} and labels {np.shape(labels)}: expected (N, H, W, C) and (N,)")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(f"labels must lie in [0, {n_classes}); found {labels.min()}..{labels.max()}")


# ---------------------------------------------------------------- scores


def _scoring_runs(images: np.ndarray, labels: np.ndarray, n_classes: int, config: ScoreConfig, seed: int,
                  feature_mask: np.ndarray | None, track_epochs: bool,
                  ) -> tuple[np.ndarray, np.ndarray | None, list[PruneCNN]]:
    """Train `score_seeds` short runs (seeds seed+k), shared by EL2N, forgetting, CCS and CNN prototypes.

    Returns final probabilities (runs, N, C), per-epoch correctness (runs, epochs, N) when
    `track_epochs` (None otherwise) and the trained models.
    """
    probas, corrects, models = [], [], []
    for k in range(config.score_seeds):
        epoch_correct: list[np.ndarray] = []

        def on_epoch(epoch: int, model: PruneCNN, into: list[np.ndarray] = epoch_correct) -> None:
            into.append(predict_proba(model, images).argmax(1) == labels)

        cfg = TrainConfig(epochs=config.score_epochs, batch_size=config.batch_size, lr=config.lr,
                          seed=seed + k, threads=default_threads())
        result = train_cnn(images, labels, n_classes, cfg, feature_mask,
                           on_epoch=on_epoch if track_epochs else None)
        probas.append(predict_proba(result.model, images))
        corrects.append(np.stack(epoch_correct) if track_epochs else None)
        models.append(result.model)
    correct = np.stack(corrects) if track_epochs else None
    return np.stack(probas), correct, models


def el2n_scores(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """||p - onehot(y)||_2 per sample and run, averaged over runs. proba: (runs, N, C); range [0, √2]."""
    onehot = np.eye(proba.shape[-1], dtype=np.float64)[labels]
    return np.linalg.norm(proba.astype(np.float64) - onehot[None], axis=-1).mean(axis=0)


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


def centroid_distances(embedding: np.ndarray, n_clusters: int = 0, seed: int = 0) -> np.ndarray:
    """Distance of each row to its nearest k-means centroid (one class's embedding).

    Centroids holding under a quarter of an average cluster are dropped before measuring: on
    atypical data k-means++ gives a far outlier its own centroid, which would make it look prototypical.
    """
    n = len(embedding)
    if n <= 1:
        return np.zeros(n)
    k = min(n_clusters or auto_clusters(n), n)
    x = embedding.astype(np.float64)
    if k == 1:
        return np.linalg.norm(x - x.mean(axis=0), axis=1)
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x)
    sizes = np.bincount(km.labels_, minlength=k)
    keep = sizes >= max(2.0, 0.25 * n / k)
    centres = km.cluster_centers_[keep] if keep.any() else x.mean(axis=0, keepdims=True)
    d = np.linalg.norm(x[:, None, :] - centres[None, :, :], axis=-1)
    return d.min(axis=1)


@torch.no_grad()
def _cnn_embed(model: PruneCNN, images: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    model.eval()
    x = to_tensor(images)
    return torch.cat([model.features(x[s:s + batch_size]) for s in range(0, len(x), batch_size)]).numpy()


def _prototype_scores(images: np.ndarray, labels: np.ndarray, n_classes: int, config: ScoreConfig, seed: int,
                      feature_mask: np.ndarray | None) -> np.ndarray:
    if config.prototype_embedding == "cnn":
        one_run = replace(config, score_seeds=1)
        _, _, models = _scoring_runs(images, labels, n_classes, one_run, seed, feature_mask, track_epochs=False)
        emb = _cnn_embed(models[0], images)
    else:
        emb = pca_embed(images, PCA_COMPONENTS, seed, feature_mask)
    scores = np.zeros(len(labels))
    # k-means per class: labels are trusted at this stage, and a class's prototypes are its own.
    for c in range(n_classes):
        members = np.flatnonzero(labels == c)
        if len(members):
            scores[members] = centroid_distances(emb[members], config.n_clusters, seed)
    return scores


def compute_scores(strategy: str, images: np.ndarray, labels: np.ndarray, n_classes: int,
                   config: ScoreConfig = ScoreConfig(), seed: int = 0,
                   feature_mask: np.ndarray | None = None) -> np.ndarray:
    """Per-sample difficulty score, float64 of length N, higher = harder (see the module table).

    random: uniform [0, 1). el2n and ccs: mean EL2N over `score_seeds` runs. forgetting: mean
    forgetting events (never learned = `score_epochs`). prototype_*: distance to the nearest
    per-class centroid in the PCA (or CNN) embedding.
    """
    _check_strategy(strategy)
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
        _, correct, _ = _scoring_runs(images, labels, n_classes, config, seed, feature_mask, track_epochs=True)
        return forgetting_scores(correct)
    return _prototype_scores(images, labels, n_classes, config, seed, feature_mask)


# ---------------------------------------------------------------- selection


def budget(fraction: float, n: int) -> int:
    """round(fraction * n) (Python's round, as `stratified_split` uses), at least 1 for a non-empty group."""
    if n == 0:
        return 0
    return max(1, min(n, round(fraction * n)))


def _groups(labels: np.ndarray, n_classes: int, per_class: bool) -> list[np.ndarray]:
    """The sets of positions that each get their own budget."""
    if not per_class:
        return [np.arange(len(labels))]
    return [m for c in range(n_classes) if len(m := np.flatnonzero(labels == c))]


def _ranked(members: np.ndarray, scores: np.ndarray, rng: np.random.Generator, hardest_first: bool) -> np.ndarray:
    """Members sorted by score; ties in seeded random order rather than by position."""
    shuffled = rng.permutation(members)
    key = -scores[shuffled] if hardest_first else scores[shuffled]
    return shuffled[np.argsort(key, kind="stable")]


def ccs_select(members: np.ndarray, scores: np.ndarray, k: int, beta: float, n_strata: int,
               rng: np.random.Generator) -> np.ndarray:
    """Coverage-centric selection (Zheng et al. 2023) of `k` of `members`.

    Drop the hardest `beta` share (capped so k stay available), cut the remaining score range into
    `n_strata` equal-width strata and visit them from the smallest: each gets min(size, budget left /
    strata left) random members. Small strata are taken whole, so easy, medium and hard regions all
    stay covered even at 90% pruning, where hardest-only selection keeps just the hard tail.
    """
    n = len(members)
    if k >= n:
        return members
    n_drop = min(round(beta * n), n - k)
    pool = _ranked(members, scores, rng, hardest_first=True)[n_drop:]
    s = scores[pool]
    lo, hi = float(s.min()), float(s.max())
    width = (hi - lo) / n_strata
    stratum = np.zeros(len(pool), dtype=np.int64) if width <= 0 else np.minimum(
        ((s - lo) / width).astype(np.int64), n_strata - 1)
    strata = [pool[stratum == b] for b in range(n_strata)]
    strata = sorted((st for st in strata if len(st)), key=len)  # stable: equal sizes stay in score order
    chosen, left = [], k
    for i, st in enumerate(strata):
        take = min(len(st), left // (len(strata) - i))
        chosen.append(rng.choice(st, size=take, replace=False))
        left -= take
    picked = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    if left > 0:  # cannot happen with the smallest-first order; kept as a guard against rounding
        rest = np.setdiff1d(pool, picked)
        picked = np.concatenate([picked, rng.choice(rest, size=min(left, len(rest)), replace=False)])
    return picked


def select_from_scores(strategy: str, scores: np.ndarray, labels: np.ndarray, n_classes: int, fraction: float,
                       seed: int = 0, config: ScoreConfig = ScoreConfig()) -> np.ndarray:
    """Positions kept for `fraction` given precomputed scores, sorted ascending (int64).

    Lets a caller score once and select several fractions.
    """
    _check_strategy(strategy)
    check_config(config)
    _check_fraction(fraction)
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(labels):
        raise DatasetError(f"{len(scores)} scores for {len(labels)} labels; expected one score per sample")
    if fraction >= 1.0:
        return np.arange(len(labels), dtype=np.int64)
    # Selection randomness (ties, CCS draws) is seeded apart from the random strategy's scores.
    rng = np.random.default_rng([seed, 1])
    kept = []
    for members in _groups(labels, n_classes, config.per_class):
        k = budget(fraction, len(members))
        if strategy == "ccs":
            kept.append(ccs_select(members, scores, k, config.ccs_beta, config.ccs_strata, rng))
        else:
            kept.append(_ranked(members, scores, rng, hardest_first=strategy not in _KEEP_LOWEST)[:k])
    out = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    return np.sort(out).astype(np.int64)


def prune_to_fraction(strategy: str, images: np.ndarray, labels: np.ndarray, n_classes: int,
                      fraction: float, seed: int = 0, config: ScoreConfig = ScoreConfig(),
                      feature_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Keep `fraction` of the set by `strategy`: (kept positions sorted ascending int64, scores float64).

    Scores are computed even at fraction 1.0 (which keeps everything) so the caller can always log them.
    """
    _check_strategy(strategy)
    check_config(config)
    _check_fraction(fraction)
    scores = compute_scores(strategy, images, labels, n_classes, config, seed, feature_mask)
    kept = select_from_scores(strategy, scores, labels, n_classes, fraction, seed, config)
    return kept, scores
