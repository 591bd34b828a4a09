"""Score-based pruning: each score ranks what it should on data built so the answer is known."""

from __future__ import annotations

import ast
import inspect
import math

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.selection import scoring
from prune_dagster.core.selection.scoring import (
    STRATEGIES,
    ScoreParams,
    budget,
    centroid_distances,
    compute_scores,
    forgetting_scores,
    prune_to_fraction,
    select_from_scores,
)

N, N_FLIP, N_PLANT = 300, 30, 10
# Short, single-seed scoring runs keep the file fast; a higher lr lets 5 epochs on 300 samples learn.
FAST = ScoreParams(score_epochs=5, score_seeds=1, lr=3e-3)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small(digits):
    """300 digits samples, their true labels and the same labels with 10% flipped to another class."""
    rng = np.random.default_rng(0)
    idx = rng.choice(len(digits.labels), N, replace=False)
    x, y = digits.images[idx], digits.labels[idx].copy()
    flipped = np.zeros(N, dtype=bool)
    flipped[rng.choice(N, N_FLIP, replace=False)] = True
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, 10, N_FLIP)) % 10
    return x, y, noisy, flipped


@pytest.fixture(scope="module")
def planted(small):
    """The 300 samples with one per class replaced by a uniform noise image (label unchanged).

    One per class: several noise images in one small class are close to each other (all near mid-grey)
    and would rightly form their own cluster, i.e. a prototype of their own.
    """
    x, y, _, _ = small
    rng = np.random.default_rng(1)
    far = np.zeros(N, dtype=bool)
    far[[rng.choice(np.flatnonzero(y == c)) for c in range(10)]] = True
    x = x.copy()
    x[far] = rng.random((N_PLANT, *x.shape[1:])).astype(np.float32)
    return x, y, far


def per_class_counts(labels: np.ndarray, kept: np.ndarray, n_classes: int = 10) -> np.ndarray:
    return np.bincount(labels[kept], minlength=n_classes)


# ---------------------------------------------------------------- rankings


@pytest.mark.parametrize("strategy", ["el2n", "forgetting"])
def test_flipped_labels_score_harder(small, strategy):
    x, _, noisy, flipped = small
    cfg = FAST if strategy == "el2n" else ScoreParams(score_epochs=6, score_seeds=1, lr=3e-3)
    scores = compute_scores(strategy, x, noisy, 10, cfg, seed=0)
    assert scores.shape == (N,) and scores.dtype == np.float64
    assert scores[flipped].mean() > scores[~flipped].mean()
    assert roc_auc_score(flipped, scores) > 0.8


def test_el2n_keeps_the_hardest(small):
    x, _, noisy, flipped = small
    kept, scores = prune_to_fraction("el2n", x, noisy, 10, 0.2, seed=0, config=FAST)
    # Flipped samples are 10% of the set but should dominate the hardest 20%.
    assert flipped[kept].mean() > 0.3
    for c in range(10):  # within a class, every kept sample is at least as hard as every dropped one
        members = np.flatnonzero(noisy == c)
        in_kept = np.isin(members, kept)
        assert scores[members[in_kept]].min() >= scores[members[~in_kept]].max()


def test_forgetting_scores_by_hand():
    # runs=1, epochs=4; samples: flips twice, always right, never right, learned late
    correct = np.array([[[1, 1, 0, 0],
                         [0, 1, 0, 0],
                         [1, 1, 0, 1],
                         [0, 1, 0, 1]]], dtype=bool)
    s = forgetting_scores(correct)
    assert np.floor(s).tolist() == [2, 0, 4, 0]  # never learned counts `epochs`, above any real count
    assert s[2] > s[0] > s[3] > s[1]  # the fractional tie-break ranks late-learned above always-right


def test_planted_outliers_rank_prototype_hard(planted):
    x, y, far = planted
    scores = compute_scores("prototype_hard", x, y, 10, FAST, seed=0)
    assert roc_auc_score(far, scores) > 0.95
    kept_hard, _ = prune_to_fraction("prototype_hard", x, y, 10, 0.1, seed=0, config=FAST)
    kept_easy, easy_scores = prune_to_fraction("prototype_easy", x, y, 10, 0.1, seed=0, config=FAST)
    assert np.array_equal(easy_scores, scores)  # same score, opposite end
    assert far[kept_hard].sum() >= 0.8 * N_PLANT
    assert far[kept_easy].sum() == 0


def test_prototype_cnn_embedding_runs(planted):
    x, y, far = planted
    cfg = ScoreParams(score_epochs=3, score_seeds=1, lr=3e-3, prototype_embedding="cnn")
    scores = compute_scores("prototype_hard", x, y, 10, cfg, seed=0)
    assert scores.shape == (N,) and np.isfinite(scores).all()
    assert scores[far].mean() > scores[~far].mean()


def test_far_point_with_its_own_centroid_is_still_far():
    # k-means++ gives an isolated point its own centroid; that centroid must not count as a prototype.
    rng = np.random.default_rng(0)
    emb = np.concatenate([rng.normal(0, 1, (60, 2)), rng.normal(8, 1, (60, 2)), [[60.0, -60.0]]])
    d = centroid_distances(emb, n_clusters=3, seed=0)
    assert d.argmax() == len(emb) - 1


def test_feature_mask_is_used_by_prototype_embedding(small):
    x, y, _, _ = small
    mask = np.zeros(x.shape[1:3], dtype=bool)
    mask[2:6, 2:6] = True
    a = compute_scores("prototype_hard", x, y, 10, FAST, seed=0)
    b = compute_scores("prototype_hard", x, y, 10, FAST, seed=0, feature_mask=mask)
    assert not np.allclose(a, b)


# ---------------------------------------------------------------- budgets


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.77])
def test_random_keeps_round_f_n_per_class(small, fraction):
    x, y, _, _ = small
    kept, scores = prune_to_fraction("random", x, y, 10, fraction, seed=3)
    counts = np.bincount(y, minlength=10)
    assert per_class_counts(y, kept).tolist() == [max(1, round(fraction * c)) for c in counts]
    assert kept.dtype == np.int64 and np.all(np.diff(kept) > 0)
    assert scores.dtype == np.float64 and len(scores) == N


def test_global_budget_without_per_class(small):
    x, y, _, _ = small
    kept, _ = prune_to_fraction("random", x, y, 10, 0.3, config=ScoreParams(per_class=False))
    assert len(kept) == round(0.3 * N)


def test_every_class_keeps_one_and_empty_classes_are_fine(small):
    x, y, _, _ = small
    rare = np.concatenate([np.flatnonzero(y != 9), np.flatnonzero(y == 9)[:2]])
    xs, ys = x[rare], y[rare]
    for strategy in ("random", "prototype_easy", "prototype_hard"):
        kept, _ = prune_to_fraction(strategy, xs, ys, 11, 0.05, config=FAST)  # class 10 has no samples
        counts = per_class_counts(ys, kept, 11)
        assert counts[9] == 1 and (counts[:10] >= 1).all() and counts[10] == 0


def test_budget_is_round_with_a_floor_of_one():
    assert [budget(0.5, n) for n in (0, 1, 3, 5, 100)] == [0, 1, 2, 2, 50]
    assert budget(0.01, 10) == 1 and budget(1.0, 7) == 7


# ---------------------------------------------------------------- CCS


def _deciles_hit(scores: np.ndarray, kept: np.ndarray) -> int:
    """How many of the ten score deciles the kept samples come from."""
    edges = np.quantile(scores, np.linspace(0, 1, 11)[1:-1])
    return len(np.unique(np.searchsorted(edges, scores[kept])))


def test_ccs_covers_the_score_range_where_hardest_does_not():
    rng = np.random.default_rng(0)
    n = 2000
    scores = rng.exponential(0.2, n)  # skewed like EL2N: most samples easy, a thin hard tail
    labels = np.zeros(n, dtype=np.int64)
    cfg = ScoreParams(ccs_beta=0.1, ccs_strata=20)
    ccs = select_from_scores("ccs", scores, labels, 1, 0.1, seed=0, config=cfg)
    hardest = select_from_scores("el2n", scores, labels, 1, 0.1, seed=0, config=cfg)
    assert len(ccs) == len(hardest) == 200
    beta_cut = np.sort(scores)[::-1][int(0.1 * n) - 1]
    assert scores[ccs].max() < beta_cut  # the hardest 10% (likely mislabelled) are dropped first
    assert _deciles_hit(scores, hardest) == 1
    assert _deciles_hit(scores, ccs) >= 8
    assert scores[ccs].min() < np.quantile(scores, 0.05)  # easy region still represented


def test_ccs_small_strata_are_taken_whole():
    # 4 strata of width 0.225 hold 194, 3, 2 and 1 samples (scores 0, 0.3, 0.6, 0.9); budget 20 → the
    # three small strata whole (1 + 2 + 3) and 14 from the big one.
    scores = np.concatenate([[0.9], [0.6] * 2, [0.3] * 3, [0.0] * 194])
    kept = select_from_scores("ccs", scores, np.zeros(200, dtype=np.int64), 1, 0.1,
                              config=ScoreParams(ccs_beta=0.0, ccs_strata=4))
    assert len(kept) == 20
    assert np.isin([0, 1, 2, 3, 4, 5], kept).all()


def test_ccs_budget_larger_than_beta_remainder():
    # fraction 0.95 > 1 - beta: drop only as many hard samples as the budget allows.
    scores = np.linspace(0, 1, 100)
    kept = select_from_scores("ccs", scores, np.zeros(100, dtype=np.int64), 1, 0.95,
                              config=ScoreParams(ccs_beta=0.1))
    assert np.array_equal(kept, np.arange(95))


def test_ccs_end_to_end_per_class(small):
    x, _, noisy, _ = small
    kept, scores = prune_to_fraction("ccs", x, noisy, 10, 0.2, seed=0, config=FAST)
    el2n = compute_scores("el2n", x, noisy, 10, FAST, seed=0)
    assert np.allclose(scores, el2n)  # CCS ranks by EL2N
    counts = np.bincount(noisy, minlength=10)
    assert per_class_counts(noisy, kept).tolist() == [max(1, round(0.2 * c)) for c in counts]


# ---------------------------------------------------------------- determinism and settings


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_same_output_and_fraction_one_keeps_all(small, strategy):
    x, _, noisy, _ = small
    cfg = ScoreParams(score_epochs=2, score_seeds=1, lr=3e-3)
    a_kept, a_scores = prune_to_fraction(strategy, x, noisy, 10, 0.3, seed=5, config=cfg)
    b_kept, b_scores = prune_to_fraction(strategy, x, noisy, 10, 0.3, seed=5, config=cfg)
    assert np.array_equal(a_kept, b_kept) and np.array_equal(a_scores, b_scores)
    # Fraction 1.0 reuses the scores already computed, so the check costs no extra training.
    assert np.array_equal(select_from_scores(strategy, a_scores, noisy, 10, 1.0, seed=5, config=cfg),
                          np.arange(N))


def test_fraction_one_keeps_all_end_to_end(small):
    x, y, _, _ = small
    kept, scores = prune_to_fraction("forgetting", x, y, 10, 1.0, config=ScoreParams(score_epochs=1, score_seeds=1))
    assert np.array_equal(kept, np.arange(N)) and len(scores) == N


def test_different_seed_different_random_subset(small):
    x, y, _, _ = small
    a, _ = prune_to_fraction("random", x, y, 10, 0.3, seed=0)
    b, _ = prune_to_fraction("random", x, y, 10, 0.3, seed=1)
    assert not np.array_equal(a, b)


def test_el2n_averages_over_seeds(small, monkeypatch):
    x, _, noisy, _ = small
    seeds = []
    real = scoring.train_any

    def spy(*args, **kwargs):
        seeds.append(args[3].seed)
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "train_any", spy)
    compute_scores("el2n", x[:60], noisy[:60], 10, ScoreParams(score_epochs=1, score_seeds=3), seed=7)
    assert seeds == [7, 8, 9]


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, math.nan, "half"])
def test_fraction_out_of_range(small, fraction):
    x, y, _, _ = small
    with pytest.raises(ConfigError, match="fraction"):
        prune_to_fraction("random", x, y, 10, fraction)


def test_unknown_strategy_lists_the_valid_ones(small):
    x, y, _, _ = small
    with pytest.raises(ConfigError, match="strategy='grand'.*random, el2n, forgetting"):
        prune_to_fraction("grand", x, y, 10, 0.5)
    with pytest.raises(ConfigError, match="strategy"):
        compute_scores("grand", x, y, 10)


@pytest.mark.parametrize("setting, value", [
    ("score_epochs", 0), ("score_seeds", 0), ("n_clusters", -1), ("ccs_beta", 1.0), ("ccs_strata", 0),
    ("prototype_embedding", "swav"), ("fit_sample", -1), ("lr", 0.0),
])
def test_bad_settings_are_named(small, setting, value):
    # refused when the settings are made, naming the setting, before any scoring run
    with pytest.raises(ValidationError, match=setting):
        ScoreParams(**{setting: value})
    # a config that skipped validation is still refused by the scoring functions, in one line
    x, y, _, _ = small
    with pytest.raises(ConfigError, match=f"^{setting}="):
        prune_to_fraction("random", x, y, 10, 0.5, config=ScoreParams.model_construct(**{setting: value}))


def test_prune_params_refuse_unknown_strategy_and_fraction():
    from prune_dagster.core.selection.strategies import PruneParams

    with pytest.raises(ValidationError, match="strategy"):
        PruneParams(strategy="el2m")
    for fraction in (0.0, 1.5):
        with pytest.raises(ValidationError, match="target_fraction"):
            PruneParams(target_fraction=fraction)
    assert PruneParams(target_fraction=1.0).strategy == "el2n"


def test_no_dagster_import():
    tree = ast.parse(inspect.getsource(scoring))
    names = [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not any(n.split(".")[0] == "dagster" for n in names)
