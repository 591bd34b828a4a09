"""The K-fold representation and the noise-rate-bounded label decision, on data with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from prune_dagster.core.errors import DatasetError
from prune_dagster.core.steps.noise_rate import NoiseRateParams, decide_label_issues
from prune_dagster.core.training.representation import (
    RepresentationParams,
    assign_folds,
    bounded_sample,
    compute_representation,
    shift_batch,
    train_fold_model,
)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    return np.array([f"d{i}" for i in range(len(x))]), x, d.target.astype(np.int64)


def _flip(y: np.ndarray, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    flip = np.zeros(len(y), dtype=bool)
    flip[rng.choice(len(y), int(rate * len(y)), replace=False)] = True
    noisy = y.copy()
    noisy[flip] = (y[flip] + rng.integers(1, 10, flip.sum())) % 10
    return noisy, flip


FAST = RepresentationParams(folds=3, epochs=12, batch_size=64, augmentation="none", lr=3e-3)


@pytest.fixture(scope="module")
def noisy_rep(digits):
    ids, x, y = digits
    noisy, flip = _flip(y, 0.10, seed=3)
    return noisy, flip, compute_representation(ids, x, noisy, 10, FAST)


def test_probs_are_out_of_fold(digits, noisy_rep) -> None:
    """A planted wrong label is memorised by the models that train on it, never seen by its own fold's."""
    _, x, _ = digits
    noisy, flip, rep = noisy_rep
    oof_given = rep.probs[np.arange(len(noisy)), noisy]
    assert np.median(oof_given[flip]) < 0.1  # the unseen model disagrees with the flipped label
    oof_el2n = np.linalg.norm(rep.probs - np.eye(10)[noisy], axis=1)
    assert rep.el2n[flip].mean() < oof_el2n[flip].mean() - 0.1  # the models that saw it learnt part of it
    # Sample i's row is exactly the prediction of the model trained without fold(i).
    f = 1
    torch.set_num_threads(FAST.threads)  # as compute_representation: the same summation order
    model = train_fold_model(x[rep.fold != f], noisy[rep.fold != f], 10, FAST, seed=FAST.seed * 100 + f)
    with torch.no_grad():
        direct = torch.softmax(model(torch.from_numpy(np.transpose(x[rep.fold == f], (0, 3, 1, 2)))), 1).numpy()
    np.testing.assert_allclose(rep.probs[rep.fold == f], direct, atol=1e-5)
    assert rep.embeddings.shape == (len(noisy), 128) and np.isfinite(rep.embeddings).all()
    assert rep.oof_accuracy == pytest.approx(float((rep.probs.argmax(1) == noisy).mean()))


def test_decision_flags_planted_flips(noisy_rep) -> None:
    noisy, flip, rep = noisy_rep
    decision = decide_label_issues(noisy, rep.probs)
    tp = (decision.issues & flip).sum()
    precision, recall = tp / decision.issues.sum(), tp / flip.sum()
    assert precision >= 0.9 and recall >= 0.8, (precision, recall)
    assert decision.issues.sum() <= decision.metadata["cap"]
    assert 0.06 <= decision.estimated_noise_rate <= 0.14


def test_decision_keeps_clean_separable_data() -> None:
    """Probabilities that agree with every label: nothing to flag. Hard but right samples stay too."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 2000)
    probs = rng.dirichlet(np.ones(5) * 0.3, size=2000) * 0.2
    probs[np.arange(2000), y] += 0.8
    assert not decide_label_issues(y, probs).issues.any()
    # 3% hard samples: the model is unsure (given label 0.35, the rest spread): it cannot tell, so it keeps.
    hard = rng.choice(2000, 60, replace=False)
    probs[hard] = 0.65 / 4
    probs[hard, y[hard]] = 0.35
    decision = decide_label_issues(y, probs)
    assert decision.issues.sum() <= decision.metadata["cap"]
    assert not decision.issues.any()


def test_decision_never_far_beyond_the_estimate() -> None:
    """predicted_neq_given proposes every disagreement; the cap holds it to the confident-joint estimate."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 1000)
    probs = np.full((1000, 4), 0.02)
    probs[np.arange(1000), y] = 0.94
    wrong = rng.choice(1000, 20, replace=False)  # confidently another class: real label errors
    probs[wrong] = 0.02
    probs[wrong, (y[wrong] + 1) % 4] = 0.94
    decision = decide_label_issues(y, probs, NoiseRateParams(filter_by="predicted_neq_given"))
    assert set(np.flatnonzero(decision.issues)) == set(wrong)
    half = decide_label_issues(y, probs, NoiseRateParams(max_flag_factor=0.5))
    assert half.issues.sum() == half.metadata["cap"] == 10
    assert not decide_label_issues(y, probs, NoiseRateParams(max_flag_factor=0.0)).issues.any()


def test_seeds_reproduce(digits) -> None:
    ids, x, y = digits
    params = RepresentationParams(folds=2, epochs=1, augmentation="shift", max_shift=1)
    a = compute_representation(ids[:600], x[:600], y[:600], 10, params)
    b = compute_representation(ids[:600], x[:600], y[:600], 10, params)
    c = compute_representation(ids[:600], x[:600], y[:600], 10, params.model_copy(update={"seed": 1}))
    np.testing.assert_array_equal(a.probs, b.probs)
    np.testing.assert_array_equal(a.el2n, b.el2n)
    assert not np.array_equal(a.probs, c.probs)
    doc = compute_representation(ids[:600], x[:600], y[:600], 10, params.model_copy(update={"model": "document"}))
    assert doc.embeddings.shape == (600, 128) and not np.array_equal(a.probs, doc.probs)


def test_folds_and_bounded_fit_sample() -> None:
    y = np.repeat(np.arange(3), [50, 30, 20])
    fold = assign_folds(y, 4, seed=0)
    for c in range(3):  # stratified: every class spread evenly over the folds
        counts = np.bincount(fold[y == c], minlength=4)
        assert counts.max() - counts.min() <= 1
    pool = np.flatnonzero(fold != 0)
    sample = bounded_sample(y, pool, 30, np.random.default_rng(0))
    assert 27 <= len(sample) <= 33 and set(np.unique(y[sample])) == {0, 1, 2} and np.isin(sample, pool).all()
    np.testing.assert_array_equal(bounded_sample(y, pool, 0, np.random.default_rng(0)), pool)


def test_shift_moves_content_and_repeats_edges() -> None:
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 3:5, 3:5] = 1.0
    out = shift_batch(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.all(out.sum((1, 2, 3)) == 4)  # the blob moved whole (it is >= 2 px from every edge)
    assert len({tuple(torch.nonzero(o[0])[0].tolist()) for o in out}) > 5  # per-image offsets


def test_bad_input_is_one_clear_error(digits) -> None:
    ids, x, y = digits
    with pytest.raises(DatasetError, match="folds=4"):
        compute_representation(ids[:5], x[:5], y[:5], 10, RepresentationParams(folds=4))
    with pytest.raises(DatasetError, match="labels must be"):
        compute_representation(ids[:50], x[:50], y[:50] + 10, 10)


def test_all_folds_embedding_is_one_space(digits) -> None:
    """Exact copies get the same embedding whatever folds they fall in (own_fold: different networks)."""
    ids, x, y = digits
    xs, ys = np.concatenate([x[:400], x[:40]]), np.concatenate([y[:400], y[:40]])
    params = RepresentationParams(folds=2, epochs=1)
    rep = compute_representation(np.arange(440), xs, ys, 10, params)
    np.testing.assert_allclose(rep.embeddings[400:], rep.embeddings[:40], atol=1e-5)
    own = compute_representation(np.arange(440), xs, ys, 10, params.model_copy(update={"embedding": "own_fold"}))
    split = own.fold[400:] != own.fold[:40]
    assert split.any()
    assert np.abs(own.embeddings[400:][split] - own.embeddings[:40][split]).max() > 0.1
