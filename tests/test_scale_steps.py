"""The outlier, label-noise and embedding steps at scale: bounded models, blockwise scoring through a
Mapper, the same answer under any mapper, and today's answer on data below the caps."""

import pickle

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from prune_dagster.core.embedding.pca import FIT_SAMPLE, flatten, pca_embed
from prune_dagster.core.infra.parallel import serial_map
from prune_dagster.core.steps.label_classifier import (
    MIN_ROWS_PER_CLASS,
    find_label_issues,
    out_of_fold_probabilities,
    stratified_sample,
)
from prune_dagster.core.steps.outliers import anomaly_scores, find_outliers, neighbour_count, reference_positions


def remote_like_map(fn, items, shared=None):
    """What a cluster does to the work: fn, items and shared pickled, items run last to first on one
    BLAS thread (a Dask worker's setting), results put back in item order."""
    fn, items, shared = pickle.loads(pickle.dumps((fn, list(items), dict(shared or {}))))
    with threadpool_limits(1):
        out = [fn(item, **shared) for item in reversed(items)]
    return out[::-1]


def tiled_digits(digits, n, seed=0):
    """n digit-like images: the bundled digits shifted by up to a pixel, with a little noise."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, len(digits.labels), n)
    padded = np.pad(digits.images[..., 0], ((0, 0), (1, 1), (1, 1)))
    dy, dx = rng.integers(0, 3, n), rng.integers(0, 3, n)
    images = np.stack([padded[s, a:a + 8, b:b + 8] for s, a, b in zip(src, dy, dx, strict=True)])
    images = np.clip(images + rng.normal(0, 0.05, images.shape), 0, 1).astype(np.float32)[..., None]
    return np.arange(n).astype(str).astype(object), images, digits.labels[src].copy()


@pytest.fixture(scope="module")
def large(digits):
    """4,000 tiled digits with 30 uniform-noise images at known positions."""
    ids, images, labels = tiled_digits(digits, 4000)
    noise_at = np.random.default_rng(1).choice(len(ids), 30, replace=False)
    images[noise_at] = np.random.default_rng(2).random((30, 8, 8, 1), dtype=np.float32)
    return ids, images, labels, noise_at


# -- outliers ------------------------------------------------------------------------------------

def test_neighbour_count_grows_with_the_reference():
    # at least 20, at least 2.5% of the reference (a group of similar outliers cannot be its own
    # neighbourhood), never more than the other rows
    assert [neighbour_count(n) for n in (10, 500, 800, 1000, 8240, 10_240, 20_000)] == [9, 20, 20, 25, 206, 256, 256]
    assert neighbour_count(400, n_neighbors=5) == 10 and neighbour_count(1000, share=0.0) == 20


def test_knn_scores_below_the_reference_size_are_todays(digits):
    emb = pca_embed(digits.images[:1000], 64)
    k = neighbour_count(1000)  # 25
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(emb).kneighbors(emb)
    assert np.array_equal(anomaly_scores(emb, "knn", block_rows=500), dist[:, 1:].mean(axis=1))
    lof = LocalOutlierFactor(n_neighbors=k).fit(emb)
    assert np.array_equal(anomaly_scores(emb, "lof", block_rows=500), -lof.negative_outlier_factor_)
    forest = IsolationForest(n_estimators=200, random_state=3).fit(emb)
    assert np.array_equal(anomaly_scores(emb, "isolation_forest", seed=3, block_rows=500), -forest.score_samples(emb))
    # With exact copies, the sample itself is dropped rather than whichever zero-distance column came
    # first; the two differ only by rounding (the GEMM distance of a row to itself is ~1e-8, not 0).
    emb = np.concatenate([emb, emb[:5]])
    dist, _ = NearestNeighbors(n_neighbors=neighbour_count(len(emb)) + 1).fit(emb).kneighbors(emb)
    np.testing.assert_allclose(anomaly_scores(emb, "knn"), dist[:, 1:].mean(axis=1), rtol=0, atol=1e-7)


def test_knn_scores_at_scale_are_distances_to_a_bounded_reference_without_the_sample_itself(digits):
    emb = pca_embed(digits.images, 16)
    emb = np.concatenate([emb, emb[:300]])  # rows 0..299 have an exact copy at 1797..2096
    ref = reference_positions(len(emb), 400, seed=0)
    assert len(ref) == 400 and np.array_equal(ref, np.unique(ref))
    scores = anomaly_scores(emb, "knn", n_neighbors=5, reference_rows=400, block_rows=256)
    d = np.sqrt(((emb[:, None, :].astype(np.float64) - emb[ref][None, :, :]) ** 2).sum(-1))
    d[ref, np.arange(len(ref))] = np.inf  # a reference row is not its own neighbour; its copy is
    expected = np.sort(d, axis=1)[:, :neighbour_count(400, n_neighbors=5)].mean(axis=1)  # 10 of 400
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    copies_in_ref = np.isin(np.arange(300), ref) & np.isin(np.arange(1797, 2097), ref)
    assert copies_in_ref.any()  # so the check above covered a row whose copy is in the reference


def test_find_outliers_at_scale_finds_planted_noise_identically_under_any_mapper(large):
    ids, images, labels, noise_at = large
    emb = pca_embed(images, 64)
    results = {}
    for method in ("knn", "isolation_forest", "lof"):
        a = find_outliers(ids, emb, method, reference_rows=1500)
        b = find_outliers(ids, emb, method, reference_rows=1500, mapper=remote_like_map, block_rows=700)
        assert a.removed.equals(b.removed), method
        results[method] = set(a.removed["id"])
    assert set(ids[noise_at]) <= results["knn"] and len(results["knn"]) <= 31
    assert set(ids[noise_at]) <= results["lof"]
    assert len(set(ids[noise_at]) & results["isolation_forest"]) >= 25


def test_isolation_forest_at_scale_is_fitted_on_the_reference_only(large):
    _, images, _, _ = large
    emb = pca_embed(images, 16)
    forest = IsolationForest(n_estimators=200, random_state=0).fit(emb[reference_positions(len(emb), 1000, 0)])
    assert np.array_equal(anomaly_scores(emb, "isolation_forest", reference_rows=1000), -forest.score_samples(emb))


def test_lof_at_scale_keeps_the_reference_rows_fitted_factors(large):
    _, images, _, _ = large
    emb = pca_embed(images, 16)
    ref = reference_positions(len(emb), 1000, 0)
    lof = LocalOutlierFactor(n_neighbors=neighbour_count(len(ref)), novelty=True).fit(emb[ref])
    scores = anomaly_scores(emb, "lof", reference_rows=1000)
    assert np.array_equal(scores[ref], -lof.negative_outlier_factor_)
    rest = np.setdiff1d(np.arange(len(emb)), ref)
    assert np.array_equal(scores[rest], -lof.score_samples(emb[rest]))


# -- embedding -----------------------------------------------------------------------------------

def test_pca_embed_fits_on_a_bounded_sample_and_projects_blockwise(digits):
    small = digits.images
    from sklearn.decomposition import PCA

    x = flatten(small)
    assert np.array_equal(pca_embed(small, 32),
                          PCA(32, random_state=0).fit(x).transform(x).astype(np.float32))
    images = np.concatenate([small] * 12)  # 21,564 rows > FIT_SAMPLE
    assert len(images) > FIT_SAMPLE
    a = pca_embed(images, 16, block_rows=5000)
    b = pca_embed(images, 16, block_rows=5000, mapper=remote_like_map)
    assert np.array_equal(a, b) and a.shape == (len(images), 16) and a.dtype == np.float32
    fit = flatten(images[np.random.default_rng(0).choice(len(images), FIT_SAMPLE, replace=False)])
    np.testing.assert_allclose(a, PCA(16, random_state=0).fit(fit).transform(flatten(images)), atol=1e-4)


# -- label noise ---------------------------------------------------------------------------------

def test_out_of_fold_probabilities_below_the_cap_are_todays_svc(digits):
    x, y = flatten(digits.images[:600]), digits.labels[:600]
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    today = cross_val_predict(SVC(probability=True, gamma="scale", random_state=0), x, y, cv=cv,
                              method="predict_proba")
    assert np.array_equal(out_of_fold_probabilities(x, y), today)


def test_stratified_sample_is_bounded_proportional_and_keeps_small_classes():
    labels = np.repeat(np.arange(4), [5000, 3000, 1990, 10])
    pool = np.arange(len(labels))
    sample = stratified_sample(labels, pool, 1000, np.random.default_rng(0))
    counts = np.bincount(labels[sample], minlength=4)
    assert np.array_equal(sample, np.unique(sample))
    assert counts[3] == 10  # all of a class below MIN_ROWS_PER_CLASS
    assert abs(counts[0] - 500) <= 1 and abs(counts[1] - 300) <= 1 and counts[2] >= MIN_ROWS_PER_CLASS
    assert len(sample) <= 1000 + 4 * MIN_ROWS_PER_CLASS
    assert np.array_equal(sample, stratified_sample(labels, pool, 1000, np.random.default_rng(0)))
    assert np.array_equal(stratified_sample(labels, pool[:900], 1000, np.random.default_rng(0)), pool[:900])


def test_label_noise_at_scale_finds_flips_with_bounded_models_under_any_mapper(digits):
    ids, images, labels = tiled_digits(digits, 5000, seed=4)
    rng = np.random.default_rng(5)
    flip = rng.choice(len(ids), 500, replace=False)
    noisy = labels.copy()
    noisy[flip] = (labels[flip] + rng.integers(1, 10, len(flip))) % 10
    x = flatten(images)
    kwargs = {"exact_max_rows": 3000, "fit_rows": 2500}
    a = find_label_issues(ids, x, noisy, **kwargs)
    b = find_label_issues(ids, x, noisy, **kwargs, mapper=remote_like_map, block_rows=900)
    assert a.removed.equals(b.removed) and a.metadata == b.metadata
    assert a.metadata["model"].startswith("knn")
    found, truth = set(a.removed["id"]), set(ids[flip])
    precision, recall = len(found & truth) / len(found), len(found & truth) / len(truth)
    assert precision >= 0.85 and recall >= 0.95, (precision, recall)  # measured 0.89 / 0.97


def test_label_noise_at_scale_fits_each_model_on_the_capped_sample(digits, monkeypatch):
    from prune_dagster.core.steps import label_classifier

    fitted = []
    real_fit = label_classifier._fit

    def spy(classifier, seed, scale, features, y):
        fitted.append(len(y))
        return real_fit(classifier, seed, scale, features, y)

    monkeypatch.setattr(label_classifier, "_fit", spy)
    ids, images, labels = tiled_digits(digits, 4000, seed=6)
    noisy = labels.copy()
    noisy[:200] = (noisy[:200] + 1) % 10
    find_label_issues(ids, flatten(images), noisy, exact_max_rows=1000, fit_rows=700, mapper=serial_map)
    assert len(fitted) == 6  # five folds and the re-check
    assert max(fitted) <= 700 + 10 * MIN_ROWS_PER_CLASS
