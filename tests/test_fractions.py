"""The four fractions (core/selection/fractions.py): one meaning each, retained_fraction = kept_fraction_of_train."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prune_dagster.core.ledger import Selection, StepResult, removed_frame
from prune_dagster.core.selection.fractions import NAMES, fractions, selection_fractions


def test_each_fraction_from_its_own_counts():
    f = fractions(target=0.5, n_kept=45, n_train_split=100, n_cleaned=90, n_selected=45,
                  sample_passes=450, epochs=20, n_train=45)
    assert (f.target_fraction, f.kept_fraction_of_train, f.kept_fraction_of_cleaned) == (0.5, 0.45, 0.5)
    assert f.sample_pass_fraction == 0.5
    d = f.as_dict()
    assert set(d) == {*NAMES, "retained_fraction"} and d["retained_fraction"] == d["kept_fraction_of_train"]
    # an empty split has no kept share: NaN, not 0 or 1
    assert math.isnan(fractions(target=1.0, n_kept=0, n_train_split=0, n_cleaned=1, n_selected=1)
                      .kept_fraction_of_train)


def selection(n: int = 100) -> Selection:
    return Selection(kept_ids=np.array([f"s{i}" for i in range(n)]), test_ids=np.array(["t0"]), n_train_split=n)


@pytest.mark.parametrize("enabled", [True, False])
def test_selection_fractions_read_the_score_step(enabled):
    sel = selection().advance("outliers_removed", StepResult(removed=removed_frame(["s0", "s1"], "far")), {}, 0.0)
    removed = [f"s{i}" for i in range(2, 51)] if enabled else []
    sel = sel.advance("pruned_dataset", StepResult(removed=removed_frame(removed, "el2n_below_cutoff")),
                      {"enabled": enabled, "target_fraction": 0.5}, 0.0)
    f = selection_fractions(sel, n_dropped=4, sample_passes=300, epochs=10, n_train=len(sel.kept_ids))
    kept = 49 if enabled else 98
    assert f.target_fraction == (0.5 if enabled else 1.0)
    assert f.kept_fraction_of_cleaned == pytest.approx(kept / 98)
    assert f.kept_fraction_of_train == pytest.approx((kept - 4) / 100)  # after 4 dropped in training
    assert f.sample_pass_fraction == pytest.approx(300 / (10 * kept))
