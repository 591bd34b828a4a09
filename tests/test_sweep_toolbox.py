"""The sweep's semantic deduplication (from the shared representation) and augmentation settings."""

import numpy as np
import pytest

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.ledger import Selection
from prune_dagster.core.selection.semdedup import SemDedupParams, semdedup_select
from prune_dagster.core.selection.sweep import (
    SweepModelsParams,
    SweepScoreParams,
    SweepTrainer,
    compute_sweep_scores,
    known_strategies,
)
from prune_dagster.core.training.shared import SharedRepresentation


def cleaned(digits):
    data = digits.with_split(0.2, 0)
    selection = Selection(kept_ids=data.ids_in("train"), test_ids=data.ids_in("test"),
                          n_train_split=len(data.ids_in("train")))
    return data, selection


def embeddings_with_copies(data, selection):
    """Pixel embeddings of the training samples where 20 samples of each class are near copies (tiny
    noise) of 20 others of the same class: the pairs semdedup must thin out first."""
    pos = np.sort(data.index_of(selection.kept_ids))
    x = data.images[pos].reshape(len(pos), -1).astype(np.float32)
    labels = data.labels[pos]
    rng = np.random.default_rng(0)
    pairs = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        for a, b in zip(members[:20], members[20:40], strict=True):
            x[b] = x[a] + rng.normal(0, 1e-3, x.shape[1]).astype(np.float32)
            pairs.append((a, b))
    return data.ids[pos], x, pairs


def test_semdedup_is_a_sweep_strategy_that_selects_per_fraction(digits):
    assert "semdedup" in known_strategies()
    data, selection = cleaned(digits)
    ids, x, pairs = embeddings_with_copies(data, selection)
    rep = SharedRepresentation("provided", ids, embeddings=x)
    scores = compute_sweep_scores(("random", "semdedup"), data, selection, SweepScoreParams(score_seeds=1), rep)
    assert "semdedup" not in scores.scores and scores.embeddings.shape == x.shape
    trainer = SweepTrainer(data, selection, scores, SweepModelsParams(epochs=1))
    labels = scores.labels
    for fraction in (0.3, 0.6):
        kept = trainer.kept("semdedup", fraction, 0)
        expected = semdedup_select(x, fraction, labels, SemDedupParams(seed=0, fit_rows=len(x))).kept
        assert np.array_equal(kept, expected)  # one clustering reused across fractions, same selection
        assert abs(len(kept) - fraction * len(x)) <= 10
        assert np.array_equal(kept, trainer.kept("semdedup", fraction, 1))  # the same set for every seed
    # at 0.6 (removing 40%), a near copy and its original are never both kept: the copies go first
    kept = set(trainer.kept("semdedup", 0.6, 0))
    assert sum(a in kept and b in kept for a, b in pairs) == 0


def test_semdedup_without_embeddings_names_the_setting(digits):
    data, selection = cleaned(digits)
    pixels = SharedRepresentation("pixels", np.asarray(selection.kept_ids, dtype=object))
    with pytest.raises(ConfigError, match="representation.features"):
        compute_sweep_scores(("semdedup",), data, selection, SweepScoreParams(), pixels)
    # without semdedup, no embeddings are needed
    assert compute_sweep_scores(("random",), data, selection, SweepScoreParams(), pixels).embeddings is None


def test_sweep_models_train_with_augmentation(digits, monkeypatch):
    from prune_dagster.core.selection import sweep as core_sweep

    seen = []  # what each training run was given, and its per-epoch losses
    real = core_sweep.train_final

    def recording(*args, **kwargs):
        result = real(*args, **kwargs)
        seen.append((args[8], result[0].epoch_losses))  # train_final(kind, ..., epoch_plan, augment)
        return result

    monkeypatch.setattr(core_sweep, "train_final", recording)
    data, selection = cleaned(digits)
    scores = compute_sweep_scores(("random",), data, selection, SweepScoreParams())
    plain = SweepTrainer(data, selection, scores, SweepModelsParams(epochs=2)).train("random", 0.5, 0)
    again = SweepTrainer(data, selection, scores, SweepModelsParams(epochs=2)).train("random", 0.5, 0)
    shifted = SweepTrainer(data, selection, scores, SweepModelsParams(epochs=2, augment="shift", max_shift=1))
    aug = shifted.train("random", 0.5, 0)
    assert plain.metrics["test_accuracy"] == again.metrics["test_accuracy"]  # seeded
    assert aug.n_kept == plain.n_kept  # augmentation changes batches, never the kept set
    (plain_aug, plain_losses), (_, again_losses), (shift_aug, shift_losses) = seen
    assert plain_aug.augment == "none" and (shift_aug.augment, shift_aug.max_shift) == ("shift", 1)
    assert plain_losses == again_losses and shift_losses != plain_losses  # the shifted batches were trained on
    with pytest.raises(ValueError):
        SweepModelsParams(augment="mixup")
