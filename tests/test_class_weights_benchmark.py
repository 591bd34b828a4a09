"""The long-tail subsetting of benchmarks/class_weights.py: exact per-class counts, the ratio, seeded order."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "class_weights_benchmark", Path(__file__).resolve().parents[1] / "benchmarks" / "class_weights.py")
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)

# Uneven class sizes (the smallest, 120, sets n_max), shuffled positions.
LABELS = np.random.default_rng(0).permutation(np.repeat(np.arange(10), [150, 120, 200, 130, 160, 125, 180,
                                                                        140, 170, 135]))


@pytest.mark.parametrize("ratio", [10.0, 50.0])
def test_exact_exponential_counts(ratio: float) -> None:
    keep = bench.long_tail_indices(LABELS, 10, ratio, seed=3)
    counts = np.bincount(LABELS[keep], minlength=10)
    expected = np.sort(np.maximum(1, np.round(120 * ratio ** (-np.arange(10) / 9))).astype(int))[::-1]
    assert sorted(counts.tolist(), reverse=True) == expected.tolist()
    assert counts.max() == 120
    assert counts.min() == round(120 / ratio)  # largest / rarest = the ratio, up to rounding the rarest class


def test_subset_of_distinct_positions_and_seeded() -> None:
    keep = bench.long_tail_indices(LABELS, 10, 10.0, seed=1)
    assert len(np.unique(keep)) == len(keep) and keep.min() >= 0 and keep.max() < len(LABELS)
    assert np.array_equal(keep, bench.long_tail_indices(LABELS, 10, 10.0, seed=1))
    other = bench.long_tail_indices(LABELS, 10, 10.0, seed=2)
    # Another seed ranks the classes differently (which digit is rare changes).
    assert np.bincount(LABELS[keep], minlength=10).tolist() != np.bincount(LABELS[other], minlength=10).tolist()


def test_test_split_untouched() -> None:
    d = bench.load_set("digits", 0)
    keep = bench.long_tail_indices(d["y"], 10, 50.0, seed=0)
    assert len(keep) < len(d["y"])
    # The benchmark subsets x/y only; the test arrays are the loader's, balanced up to the stratified split.
    test_counts = np.bincount(d["y_test"], minlength=10)
    assert test_counts.max() - test_counts.min() <= 2 and len(d["y_test"]) == pytest.approx(0.2 * 1797, abs=10)


def test_missing_class_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="every class needs a training sample"):
        bench.long_tail_indices(np.array([0, 0, 1]), 3, 10.0, seed=0)


def _row(method: str, seed: int, bal: float, secs: float, n: int) -> dict:
    return {"set": "s", "ratio": 50.0, "seed": seed, "method": method, "n_train": n, "accuracy": bal,
            "balanced_accuracy": bal, "macro_f1": bal, "train_seconds": secs}


def test_verdict_needs_accuracy_and_time() -> None:
    rows = [_row("none", s, 0.80, 10.0, 400) for s in (0, 1)] + \
           [_row("smote", s, 0.90, 30.0, 1400) for s in (0, 1)] + \
           [_row("cw_inverse", 0, 0.91, 10.5, 400), _row("cw_inverse", 1, 0.91, 10.5, 400)] + \
           [_row("cw_effective", 0, 0.95, 13.0, 400), _row("cw_effective", 1, 0.95, 13.0, 400)]
    verdict = bench.check_target(bench.summarise(rows))
    assert verdict["s/cw_inverse"]["holds"] and verdict["s/cw_inverse"]["time_vs_none"] == pytest.approx(1.05)
    assert verdict["s/cw_effective"]["accuracy_ok"] and not verdict["s/cw_effective"]["time_ok"]
    # A cut-short run: seed 1 lacks cw_effective, so its whole group leaves the summary.
    partial = bench.complete_rows(rows[:-1])
    assert {r["seed"] for r in partial} == {0} and len(partial) == 4
