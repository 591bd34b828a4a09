"""Scoring at scale: bounded fits (fit_sample) score every sample, and small data keeps its exact scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.infra.parallel import BLOCK_ROWS
from prune_dagster.core.selection import scoring
from prune_dagster.core.selection.scoring import (
    ScoreParams,
    centroid_distances,
    compute_scores,
    el2n_scores,
    fit_subset,
    forgetting_scores,
    prune_to_fraction,
)
from prune_dagster.core.training.train import TrainParams, default_threads, predict_proba, train_cnn

FAST = ScoreParams(score_epochs=5, score_seeds=1, lr=3e-3)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiled(digits, n: int, seed: int, flip: float = 0.0):
    """n digit-like samples (the bundled digits drawn with replacement, plus small noise), some labels flipped."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, len(digits.labels), n)
    x = (digits.images[base] + rng.normal(0, 0.05, (n, *digits.images.shape[1:]))).astype(np.float32)
    y = digits.labels[base].astype(np.int64)
    flipped = np.zeros(n, dtype=bool)
    flipped[rng.choice(n, int(flip * n), replace=False)] = True
    y[flipped] = (y[flipped] + rng.integers(1, 10, flipped.sum())) % 10
    return x, y, flipped


# ---------------------------------------------------------------- the code before fit_sample, frozen


def old_runs(x, y, cfg: ScoreParams, seed: int, track_epochs: bool):
    """The scoring runs as they were: every run trains on all samples; predict_proba's batches."""
    probas, corrects = [], []
    for k in range(cfg.score_seeds):
        epoch_correct = []
        tc = TrainParams(epochs=cfg.score_epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=seed + k,
                         threads=default_threads())

        def on_epoch(epoch, model, into=epoch_correct):
            into.append(predict_proba(model, x).argmax(1) == y)

        r = train_cnn(x, y, 10, tc, None, on_epoch=on_epoch if track_epochs else None)
        probas.append(predict_proba(r.model, x))
        corrects.append(np.stack(epoch_correct) if track_epochs else None)
    return np.stack(probas), (np.stack(corrects) if track_epochs else None)


def old_el2n(proba, y):
    onehot = np.eye(proba.shape[-1], dtype=np.float64)[y]
    return np.linalg.norm(proba.astype(np.float64) - onehot[None], axis=-1).mean(axis=0)


def old_centroid_distances(embedding, n_clusters, seed):
    from sklearn.cluster import KMeans
    n = len(embedding)
    k = min(n_clusters or scoring.auto_clusters(n), n)
    x = embedding.astype(np.float64)
    if k == 1:
        return np.linalg.norm(x - x.mean(axis=0), axis=1)
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x)
    sizes = np.bincount(km.labels_, minlength=k)
    keep = sizes >= max(2.0, 0.25 * n / k)
    centres = km.cluster_centers_[keep] if keep.any() else x.mean(axis=0, keepdims=True)
    return np.linalg.norm(x[:, None, :] - centres[None, :, :], axis=-1).min(axis=1)


def test_small_data_scores_are_bit_identical_to_the_old_code(digits):
    # 2,500 samples: more than one 2,048-row inference batch, fewer than the default fit_sample.
    x, y, _ = tiled(digits, 2500, seed=0)
    cfg = ScoreParams(score_epochs=2, score_seeds=2, lr=3e-3)
    assert cfg.fit_sample >= len(y)
    proba, correct = old_runs(x, y, cfg, seed=3, track_epochs=True)
    assert np.array_equal(compute_scores("el2n", x, y, 10, cfg, seed=3), old_el2n(proba, y))
    assert np.array_equal(compute_scores("forgetting", x, y, 10, cfg, seed=3), forgetting_scores(correct))
    # fit_sample = N exactly is still the uncapped path.
    at_edge = ScoreParams(score_epochs=2, score_seeds=2, lr=3e-3, fit_sample=len(y))
    assert np.array_equal(compute_scores("el2n", x, y, 10, at_edge, seed=3), old_el2n(proba, y))


def test_small_data_prototype_scores_are_bit_identical_to_the_old_code(digits):
    x, y, _ = tiled(digits, 1500, seed=1)
    emb = scoring.pca_embed(x, scoring.PCA_COMPONENTS, 0, None)
    expected = np.zeros(len(y))
    for c in range(10):
        m = np.flatnonzero(y == c)
        expected[m] = old_centroid_distances(emb[m], 0, 0)
    assert np.array_equal(compute_scores("prototype_hard", x, y, 10, FAST, seed=0), expected)
    assert np.array_equal(compute_scores("prototype_hard", x, y, 10, ScoreParams(fit_sample=0), seed=0), expected)


def test_blocked_el2n_equals_the_unblocked_formula():
    rng = np.random.default_rng(0)
    n = BLOCK_ROWS + 1000  # two blocks
    proba = rng.dirichlet(np.ones(10), size=(2, n)).astype(np.float32)
    y = rng.integers(0, 10, n)
    assert np.array_equal(el2n_scores(proba, y), old_el2n(proba, y))


def test_blocked_nearest_centroid_equals_direct():
    rng = np.random.default_rng(0)
    x, centres = rng.normal(size=(5000, 4)), rng.normal(size=(400, 4))  # two row blocks of 2,621
    direct = np.linalg.norm(x[:, None, :] - centres[None], axis=-1).min(axis=1)
    assert np.array_equal(scoring._nearest_distance(x, centres), direct)


# ---------------------------------------------------------------- the bounded fit


def test_fit_subset_is_exact_stratified_and_seeded():
    labels = np.repeat(np.arange(4), [7000, 2000, 900, 100])
    sub = fit_subset(labels, 1000, seed=0)
    assert len(sub) == 1000 and len(np.unique(sub)) == 1000 and np.all(np.diff(sub) > 0)
    assert np.bincount(labels[sub]).tolist() == [700, 200, 90, 10]
    assert np.array_equal(sub, fit_subset(labels, 1000, seed=0))
    assert not np.array_equal(sub, fit_subset(labels, 1000, seed=1))
    odd = fit_subset(labels, 333, seed=0)  # quotas 233.1, 66.6, 29.97, 3.33: leftovers to the largest remainders
    assert len(odd) == 333 and np.bincount(labels[odd]).tolist() == [233, 67, 30, 3]
    assert fit_subset(labels, 0, seed=0) is None and fit_subset(labels, len(labels), seed=0) is None


def test_capped_runs_train_on_the_subset_and_score_every_sample(digits, monkeypatch):
    x, y, flipped = tiled(digits, 3000, seed=2, flip=0.1)
    cfg = ScoreParams(score_epochs=5, score_seeds=2, lr=3e-3, fit_sample=1000)
    fitted = []
    real = scoring.train_any

    def spy(images, labels, *args, **kwargs):
        fitted.append(np.bincount(labels, minlength=10))
        return real(images, labels, *args, **kwargs)

    monkeypatch.setattr(scoring, "train_any", spy)
    scores = compute_scores("el2n", x, y, 10, cfg, seed=0)
    assert [f.sum() for f in fitted] == [1000, 1000]
    assert np.abs(fitted[0] - np.bincount(y, minlength=10) / 3).max() <= 1  # stratified
    assert scores.shape == (3000,) and np.isfinite(scores).all()
    outside = ~np.isin(np.arange(3000), fit_subset(y, 1000, 0))
    # The samples no run trained on are ranked as well: their flipped labels still score hardest.
    assert roc_auc_score(flipped[outside], scores[outside]) > 0.9
    assert roc_auc_score(flipped[~outside], scores[~outside]) > 0.8


def test_capped_forgetting_tracks_every_sample(digits):
    x, y, flipped = tiled(digits, 3000, seed=3, flip=0.1)
    cfg = ScoreParams(score_epochs=4, score_seeds=1, lr=3e-3, fit_sample=800)
    scores = compute_scores("forgetting", x, y, 10, cfg, seed=0)
    assert scores.shape == (3000,) and np.isfinite(scores).all()
    assert roc_auc_score(flipped, scores) > 0.8


def test_capped_prototype_kmeans_fits_a_bounded_sample_and_measures_all(digits, monkeypatch):
    x, y, _ = tiled(digits, 3000, seed=4)
    rng = np.random.default_rng(5)
    far = np.zeros(len(y), dtype=bool)
    far[[rng.choice(np.flatnonzero(y == c)) for c in range(10)]] = True
    x[far] = rng.random((10, *x.shape[1:])).astype(np.float32)
    fit_sizes = []
    real = scoring.KMeans

    class Spy(real):
        def fit(self, X, *args, **kwargs):
            fit_sizes.append(len(X))
            return super().fit(X, *args, **kwargs)

    monkeypatch.setattr(scoring, "KMeans", Spy)
    cfg = ScoreParams(fit_sample=1000)
    scores = compute_scores("prototype_hard", x, y, 10, cfg, seed=0)
    assert len(fit_sizes) == 10 and max(fit_sizes) == 100  # fit_sample / classes per class
    assert roc_auc_score(far, scores) > 0.95  # most planted images were not in any fit sample
    kept, _ = prune_to_fraction("prototype_easy", x, y, 10, 0.5, seed=0, config=cfg)
    assert far[kept].sum() == 0


def test_centroid_distances_fit_rows_only_fit():
    rng = np.random.default_rng(0)
    emb = np.concatenate([rng.normal(0, 1, (500, 2)), rng.normal(8, 1, (500, 2)), [[60.0, -60.0]]])
    fit_rows = np.sort(rng.choice(1000, 200, replace=False))  # the far point is not among them
    d = centroid_distances(emb, n_clusters=2, seed=0, fit_rows=fit_rows)
    assert d.shape == (1001,) and d.argmax() == 1000 and d[:1000].max() < 5


def test_negative_fit_sample_is_named():
    with pytest.raises(ConfigError, match="fit_sample"):
        scoring.check_config(ScoreParams.model_construct(fit_sample=-1))
