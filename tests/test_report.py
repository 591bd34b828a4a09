"""The pruning report's pure parts on tables whose right answer is worked out by hand."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.selection.report import (
    area_under_curves,
    curve_table,
    figure,
    figure_png,
    full_data_accuracy,
    markdown_image,
    markdown_table,
    mean_std,
    recommend,
    report_frame,
    sweep_report,
    versus_baseline,
)


def cell(strategy, fraction, *acc, n_train=100):
    return {"strategy": strategy, "fraction": fraction, "accuracies": list(acc), "n_train": n_train,
            "train_seconds": [1.0] * len(acc)}


def table_of(curves: dict[str, dict[float, float]]) -> pd.DataFrame:
    """One seed per cell: mean = the given accuracy."""
    return curve_table(cell(s, f, a) for s, pts in curves.items() for f, a in pts.items())


def test_mean_std_uses_the_sample_standard_deviation():
    assert mean_std([0.9, 0.92, 0.94]) == pytest.approx((0.92, 0.02))
    assert mean_std([0.5]) == (0.5, 0.0)
    assert all(math.isnan(v) for v in mean_std([]))


def test_curve_table_mean_std_sem_and_order():
    t = curve_table([cell("el2n", 0.5, 0.90, 0.92, 0.94), cell("random", 0.5, 0.80, 0.80),
                     cell("el2n", 0.1, 0.5)])
    assert list(t[["strategy", "fraction"]].itertuples(index=False, name=None)) == [
        ("el2n", 0.1), ("el2n", 0.5), ("random", 0.5)]
    row = t.iloc[1]
    assert row.mean_accuracy == pytest.approx(0.92) and row.std_accuracy == pytest.approx(0.02)
    assert row.sem_accuracy == pytest.approx(0.02 / math.sqrt(3)) and row.n_seeds == 3
    assert t.iloc[2].std_accuracy == 0.0
    with pytest.raises(ConfigError, match="two results"):
        curve_table([cell("el2n", 0.5, 0.9), cell("el2n", 0.5, 0.8)])
    with pytest.raises(ConfigError, match="no accuracies"):
        curve_table([cell("el2n", 0.5)])


def test_area_under_a_flat_and_a_linear_curve():
    fractions = [round(0.1 * k, 1) for k in range(1, 11)]
    t = table_of({"flat": {f: 0.9 for f in fractions},
                  "linear": {f: f for f in fractions},  # accuracy = fraction: area = (1 - 0.01) / 2
                  "single": {0.5: 0.7}})
    auc = area_under_curves(t)
    assert auc["flat"] == pytest.approx(0.9 * 0.9)
    assert auc["linear"] == pytest.approx(0.495)
    assert auc["single"] == 0.0


def test_recommend_smallest_fraction_within_tolerance_and_its_strategy():
    t = table_of({
        "random": {0.1: 0.80, 0.3: 0.940, 0.5: 0.960, 1.0: 0.970},
        "ccs":    {0.1: 0.85, 0.3: 0.966, 0.5: 0.968, 1.0: 0.970},  # within 0.5 pt from 0.3 on
        "el2n":   {0.1: 0.60, 0.3: 0.900, 0.5: 0.966, 1.0: 0.970},
    })
    assert full_data_accuracy(t) == pytest.approx(0.97)
    rec = recommend(t, tolerance=0.005)
    assert (rec.fraction, rec.strategy) == (0.3, "ccs")
    assert rec.accuracy == pytest.approx(0.966) and rec.full_accuracy == pytest.approx(0.97)
    # a looser tolerance lets random's 0.3 (1 point down) qualify too; ccs is still higher there
    rec2 = recommend(t, tolerance=0.03)
    assert (rec2.fraction, rec2.strategy) == (0.3, "ccs")
    # tolerance 0: only fraction 1.0 qualifies; all tie on accuracy, so the name decides
    rec0 = recommend(t, tolerance=0.0)
    assert (rec0.fraction, rec0.strategy) == (1.0, "ccs")


def test_recommend_ignores_a_lucky_cell_below_a_failing_one():
    # el2n dips out of tolerance at 0.5 but is "within" at 0.3 by chance: 0.3 must not be recommended
    t = table_of({"el2n": {0.3: 0.970, 0.5: 0.955, 0.7: 0.968, 1.0: 0.970},
                  "random": {0.3: 0.94, 0.5: 0.95, 0.7: 0.96, 1.0: 0.970}})
    rec = recommend(t, tolerance=0.005)
    assert (rec.fraction, rec.strategy) == (0.7, "el2n")


def test_full_data_accuracy_pools_seeds_and_no_full_row_means_no_recommendation():
    t = curve_table([cell("a", 1.0, 0.9, 0.9, 0.9), cell("b", 1.0, 1.0), cell("a", 0.5, 0.9)])
    assert full_data_accuracy(t) == pytest.approx((3 * 0.9 + 1.0) / 4)
    rec = recommend(table_of({"a": {0.5: 0.9, 0.7: 0.95}}))
    assert rec.fraction is None and rec.strategy is None and "1.0" in rec.reason
    with pytest.raises(ConfigError, match="tolerance"):
        recommend(t, tolerance=-0.1)


def test_versus_baseline_difference_and_its_standard_error():
    t = curve_table([cell("random", 0.1, 0.80, 0.82, 0.84, 0.86, 0.88),
                     cell("ccs", 0.1, 0.84, 0.86, 0.88, 0.90, 0.92),
                     cell("el2n", 0.1, 0.60, 0.60, 0.60, 0.60, 0.60),
                     cell("random", 0.2, 0.9, 0.9), cell("ccs", 0.2, 0.9, 0.9),
                     cell("random", 1.0, 0.97), cell("ccs", 1.0, 0.97)])
    vs = versus_baseline(t).set_index("fraction")
    assert list(vs.index) == [0.1, 0.2]  # 1.0 is not a pruning comparison
    row = vs.loc[0.1]
    sem = np.std([0.80, 0.82, 0.84, 0.86, 0.88], ddof=1) / math.sqrt(5)
    assert row.best_strategy == "ccs" and row["diff"] == pytest.approx(0.04)
    assert row.se_diff == pytest.approx(math.sqrt(2) * sem) and row.beats
    assert row.n_seeds == 5
    assert not vs.loc[0.2].beats  # equal means never beat


def test_report_frame_marks_exactly_the_recommended_row():
    t = table_of({"random": {0.5: 0.95, 1.0: 0.97}, "ccs": {0.5: 0.968, 1.0: 0.97}})
    rec = recommend(t)
    out = report_frame(t, rec, area_under_curves(t))
    assert out["is_recommended"].sum() == 1
    hit = out[out["is_recommended"]].iloc[0]
    assert (hit.strategy, hit.fraction) == ("ccs", 0.5)
    assert out.set_index(["strategy", "fraction"]).loc[("random", 0.5), "within_tolerance"] == False  # noqa: E712
    assert out["auc"].notna().all()


def test_figure_and_markdown_render():
    t = curve_table([cell("random", f, 0.9 + 0.05 * f, 0.91 + 0.05 * f) for f in (0.1, 0.5, 1.0)]
                    + [cell("ccs", f, 0.92 + 0.03 * f, 0.93 + 0.03 * f) for f in (0.1, 0.5, 1.0)])
    rec = recommend(t)
    fig = figure(t, rec, area_under_curves(t))
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert any(lab.startswith("random (AUC") for lab in labels) and any(lab.startswith("ccs (AUC") for lab in labels)
    assert any(lab.startswith("recommended") for lab in labels)
    png = figure_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert markdown_image(png).startswith("![figure](data:image/png;base64,")
    md = markdown_table(t[["strategy", "fraction", "mean_accuracy"]])
    assert md.splitlines()[0] == "| strategy | fraction | mean_accuracy |" and len(md.splitlines()) == 8


def test_markdown_table_keeps_cells_that_hold_a_pipe():
    """Sweep partition keys read '0.1|el2n': unescaped, the '|' splits the cell and shifts the row."""
    md = markdown_table(pd.DataFrame({"partition": ["0.1|el2n", "1.0|random"], "mean_accuracy": [0.9, 0.95]}))
    for line in md.splitlines():
        cells = [c for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        assert len(cells) == 2, line
    assert "0.1\\|el2n" in md


def test_figure_title_fits_inside_the_saved_image():
    """The sweep's long title (sample count, schedule, seeds) stays within the figure, whole."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    t = curve_table([cell("random", f, 0.9, 0.91) for f in (0.1, 1.0)])
    title = ("Test accuracy against retained fraction (1437 cleaned samples; same_steps, 20 epochs at full data; "
             "mean ± std over 3 seeds)")
    fig = figure(t, title=title)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    box = fig.axes[0].title.get_window_extent(canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
    assert fig.axes[0].get_title().replace("\n", " ") == title


def test_sweep_report_refuses_mixed_schedules_and_names_the_fractions():
    results = [{**cell("random", f, 0.9, 0.92), "schedule": "same_steps", "epochs_full_data": 20, "sweep_id": "s",
                "kept_fraction_of_cleaned": f, "sample_pass_fraction": 1.0} for f in (0.5, 1.0)]
    rep = sweep_report(results, 0.005)
    assert list(rep.table["kept_fraction_of_cleaned"]) == [0.5, 1.0] and rep.sweep_ids == ["s"]
    assert rep.summary(4)["n_partitions_expected"] == 4 and rep.rec.fraction == 0.5
    with pytest.raises(ConfigError, match="different schedules"):
        sweep_report([*results, {**results[0], "fraction": 0.2, "schedule": "same_epochs"}], 0.005)
    with pytest.raises(ConfigError, match="no sweep_models partition"):
        sweep_report([], 0.005)
