"""InfoBatch dynamic pruning and feedback removal (prune_dagster.core.selection.dynamic)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prune_dagster.core.data.sources import load_digits
from prune_dagster.core.errors import ConfigError
from prune_dagster.core.selection.dynamic import InfoBatchPlan, make_epoch_plan, sample_pass_fraction
from prune_dagster.core.training.train import TrainParams, train_cnn


def drive(plan: InfoBatchPlan, epochs: int, losses: np.ndarray, seed: int = 0) -> list[tuple]:
    """Run the plan without a model: `losses[i]` is sample i's loss every time it is visited."""
    rng = np.random.default_rng(seed)
    out = []
    for e in range(epochs):
        order, weights = plan.plan(e, epochs, rng)
        out.append((order, weights, plan.scores.copy()))
        plan.update(order, losses[order], e)
    return out


@pytest.fixture(scope="module")
def digits():
    ds = load_digits()
    return ds.images, ds.labels


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def skewed_losses(n: int, seed: int = 0) -> np.ndarray:
    # Loss-like: most samples easy, a long tail of hard ones.
    return np.random.default_rng(seed).exponential(0.5, n)


def test_epoch_zero_and_final_epochs_visit_everything_with_unit_weights():
    n, epochs = 500, 16
    plan = make_epoch_plan("infobatch", n, delta=0.875)
    runs = drive(plan, epochs, skewed_losses(n))
    full_from = math.ceil(0.875 * epochs)  # 14
    assert plan.full_from(epochs) == full_from
    for e in [0, *range(full_from, epochs)]:
        order, weights, _ = runs[e]
        assert sorted(order.tolist()) == list(range(n)), e
        assert np.all(weights == 1.0)
    for e in range(1, full_from):
        assert len(runs[e][0]) < n


def test_skips_about_prune_ratio_of_below_mean_samples_only():
    n, epochs, r = 1000, 10, 0.3
    losses = skewed_losses(n, 1)
    plan = make_epoch_plan("infobatch", n, prune_ratio=r)
    runs = drive(plan, epochs, losses)
    for e in range(1, plan.full_from(epochs)):
        order, _, scores = runs[e]
        below = np.flatnonzero(scores < scores.mean())
        skipped = np.setdiff1d(np.arange(n), order)
        assert np.isin(skipped, below).all()  # above-mean samples are always visited
        assert abs(len(skipped) - r * len(below)) <= 1
        assert plan.history[e]["skipped"] == len(skipped)
        assert plan.history[e]["below_mean"] == len(below)


@pytest.mark.parametrize("r", [0.5, 0.3, 0.7])
def test_weights_exact_on_kept_below_mean_and_one_elsewhere(r):
    n = 400
    plan = make_epoch_plan("infobatch", n, prune_ratio=r)
    runs = drive(plan, 8, skewed_losses(n, 2))
    order, weights, scores = runs[3]
    low = scores[order] < scores.mean()
    assert low.any() and (~low).any()
    assert np.all(weights[low] == np.float32(1.0 / (1.0 - r)))
    assert np.all(weights[~low] == 1.0)
    assert weights.dtype == np.float32


def test_prune_ratio_zero_never_skips():
    n = 300
    runs = drive(make_epoch_plan("infobatch", n, prune_ratio=0.0), 6, skewed_losses(n))
    assert all(len(o) == n and np.all(w == 1.0) for o, w, _ in runs)


def test_delta_one_prunes_until_the_end():
    n, epochs = 300, 5
    plan = make_epoch_plan("infobatch", n, delta=1.0)
    runs = drive(plan, epochs, skewed_losses(n))
    assert plan.full_from(epochs) == epochs
    assert len(runs[0][0]) == n and all(len(o) < n for o, _, _ in runs[1:])


def test_deterministic_for_a_seed_and_reset_on_reuse():
    n = 400
    losses = skewed_losses(n, 3)
    a = drive(make_epoch_plan("infobatch", n, seed=7), 6, losses)
    b = drive(make_epoch_plan("infobatch", n, seed=7), 6, losses)
    c = drive(make_epoch_plan("infobatch", n, seed=8), 6, losses)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(np.sort(x[0]), np.sort(y[0])) for x, y in zip(a, c, strict=True))
    plan = make_epoch_plan("infobatch", n, seed=7)
    drive(plan, 6, losses)
    again = drive(plan, 6, losses)  # epoch 0 of a new run starts from scratch
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, again, strict=True))
    assert len(plan.history) == 6


def test_real_training_reduces_sample_passes_by_the_planned_amount(digits):
    images, labels = digits
    x, y = images[:400], labels[:400]
    epochs = 12
    plan = make_epoch_plan("infobatch", len(y), prune_ratio=0.5, seed=0)
    res = train_cnn(x, y, 10, TrainParams(epochs=epochs, seed=0, batch_size=64), epoch_plan=plan)
    full_epochs = [0, *range(plan.full_from(epochs), epochs)]  # 0, 11
    assert [h["visited"] for h in plan.history if h["epoch"] in full_epochs] == [400] * len(full_epochs)
    expected = sum(400 - round(0.5 * h["below_mean"]) for h in plan.history if h["epoch"] not in full_epochs)
    expected += 400 * len(full_epochs)
    assert res.sample_passes == expected == sum(h["visited"] for h in plan.history)
    assert res.sample_passes == plan.visits.sum()
    frac = sample_pass_fraction(res.sample_passes, epochs, len(y))
    assert 0.6 < frac < 0.8
    # The loss distribution skews as digits are learnt: more samples fall below the mean, more are skipped.
    assert plan.history[10]["below_mean"] > plan.history[1]["below_mean"] > 0


def flipped_subset(images, labels, n=600, rate=0.2, seed=0):
    rng = np.random.default_rng(seed)
    pos = rng.choice(len(labels), size=n, replace=False)
    x, y = images[pos], labels[pos].copy()
    flipped = np.zeros(n, dtype=bool)
    flipped[rng.choice(n, size=int(rate * n), replace=False)] = True
    y[flipped] = (y[flipped] + rng.integers(1, 10, flipped.sum())) % 10
    return x, y, flipped


def test_feedback_removes_planted_label_flips(digits):
    x, y, flipped = flipped_subset(*digits)
    epochs, warmup, patience = 12, 3, 3
    plan = make_epoch_plan("infobatch", len(y), feedback=True, feedback_warmup=warmup,
                           feedback_patience=patience, seed=0)
    res = train_cnn(x, y, 10, TrainParams(epochs=epochs, seed=0), epoch_plan=plan)
    removed = plan.removed_positions
    assert len(removed) == len(set(removed.tolist())) > 0
    precision = flipped[removed].mean()
    recall = flipped[removed].sum() / flipped.sum()
    assert precision >= 0.8, (precision, recall)
    assert recall >= 0.5, (precision, recall)
    # Never during warm-up: the first removal needs `patience` tail epochs counted from `warmup`.
    assert min(r.epoch for r in plan.removed) >= warmup + patience - 1
    assert max(r.epoch for r in plan.removed) < epochs - 1
    assert all(r.score > 2.0 for r in plan.removed)
    # A removed sample is never visited after its removal epoch.
    last_removal = max(r.epoch for r in plan.removed)
    assert plan.history[-1]["visited"] == len(y) - len(removed)
    assert plan.history[last_removal + 1]["removed"] == len(removed)
    assert not plan.active[removed].any()
    assert res.sample_passes == sum(h["visited"] for h in plan.history)


def test_feedback_never_removes_in_warmup_even_for_huge_losses():
    n, warmup, patience = 200, 4, 2
    losses = np.full(n, 0.1)
    losses[:20] = 50.0
    plan = make_epoch_plan("infobatch", n, feedback=True, feedback_warmup=warmup, feedback_patience=patience)
    rng = np.random.default_rng(0)
    for e in range(10):
        order, _ = plan.plan(e, 10, rng)
        plan.update(order, losses[order], e)
        if e < warmup + patience - 1:
            assert plan.removed == [], e
    assert sorted(plan.removed_positions.tolist()) == list(range(20))
    assert {r.epoch for r in plan.removed} == {warmup + patience - 1}
    assert all(r.score == 50.0 for r in plan.removed)


def test_feedback_off_removes_nothing_and_cap_limits_removals():
    n = 200
    losses = np.full(n, 0.1)
    losses[:100] = 10.0
    off = make_epoch_plan("infobatch", n)
    drive(off, 10, losses)
    assert off.removed == [] and off.removed_positions.shape == (0,)
    capped = make_epoch_plan("infobatch", n, feedback=True, feedback_quantile=0.0, feedback_max_fraction=0.1)
    drive(capped, 10, losses)
    assert len(capped.removed) == 20


def test_none_kind_gives_no_plan():
    assert make_epoch_plan("none", 10) is None
    assert make_epoch_plan(" InfoBatch ", 10) is not None


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"kind": "infobatchx"}, "kind='infobatchx'"),
        ({"prune_ratio": 1.0}, "prune_ratio=1.0"),
        ({"prune_ratio": -0.1}, "prune_ratio=-0.1"),
        ({"prune_ratio": float("nan")}, "prune_ratio=nan"),
        ({"delta": 0.0}, "delta=0.0"),
        ({"delta": 1.5}, "delta=1.5"),
        ({"feedback": True, "feedback_quantile": 1.0}, "feedback_quantile"),
        ({"feedback": True, "feedback_warmup": 0}, "feedback_warmup"),
        ({"feedback": True, "feedback_patience": 0}, "feedback_patience"),
        ({"feedback": True, "feedback_max_fraction": 1.0}, "feedback_max_fraction"),
        ({"kind": "none", "feedback": True}, "feedback=True"),
        ({"kind": "none", "prune_ratio": 2.0}, "prune_ratio=2.0"),
    ],
)
def test_config_errors_name_the_setting(kwargs, needle):
    kwargs = {"kind": "infobatch", **kwargs}
    with pytest.raises(ConfigError) as err:
        make_epoch_plan(kwargs.pop("kind"), 100, **kwargs)
    assert needle in str(err.value)
    if "kind" in needle:
        assert "none" in str(err.value) and "infobatch" in str(err.value)


def test_direct_construction_is_checked_too():
    with pytest.raises(ConfigError, match="delta"):
        InfoBatchPlan(10, delta=0.0)
