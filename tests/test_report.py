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
    cell_cost,
    compute_figure,
    curve_table,
    figure,
    figure_png,
    full_data_accuracy,
    full_data_compute,
    markdown_image,
    markdown_table,
    mean_std,
    recommend,
    report_frame,
    sweep_report,
    versus_baseline,
)


def cell(strategy, fraction, *acc, n_train=100, compute=None, train=1.0, **extra):
    out = {"strategy": strategy, "fraction": fraction, "accuracies": list(acc), "n_train": n_train,
           "train_seconds": [train] * len(acc), **extra}
    if compute is not None:
        out["compute_seconds"], out["compute_sample_passes"] = compute, 100.0 * compute
    return out


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
    costed = curve_table([cell("el2n", 0.5, 0.9, compute=12.5), cell("random", 0.5, 0.8)])
    assert costed.iloc[0].compute_seconds == 12.5 and costed.iloc[0].compute_sample_passes == 1250.0
    assert math.isnan(costed.iloc[1].compute_seconds) and math.isnan(costed.iloc[1].compute_sample_passes)
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


# (strategy, fraction): (mean accuracy, total compute seconds); full data = 0.970, reference compute
# = the fraction 1.0 cells' training (train=4 s) alone
COSTED = {("random", 0.3): (0.967, 3.0),    # cheapest, but 0.3 points down: never within 0.2
          ("infobatch", 0.5): (0.9675, 5.0),  # 0.25 points down: out
          ("el2n", 0.3): (0.9685, 6.0),       # 0.15 points down: the cheapest within 0.2
          ("random", 0.5): (0.969, 7.0),
          ("el2n", 0.5): (0.972, 8.0),        # above full data, but dearer
          ("random", 1.0): (0.970, 10.0), ("el2n", 1.0): (0.970, 14.0)}


def costed_table() -> pd.DataFrame:
    return curve_table(cell(s, f, a, compute=c, train=4.0 if f == 1.0 else 1.0) for (s, f), (a, c) in COSTED.items())


def test_recommend_the_cheapest_cell_within_tolerance_of_full_data():
    t = costed_table()
    assert full_data_accuracy(t) == pytest.approx(0.97) and full_data_compute(t) == pytest.approx(4.0)
    rec = recommend(t)  # default tolerance 0.002: 0.2 points
    assert rec.tolerance == 0.002 and rec.cost == "compute_seconds"
    assert (rec.strategy, rec.fraction) == ("el2n", 0.3)
    assert rec.accuracy == pytest.approx(0.9685) and rec.compute_seconds == pytest.approx(6.0)
    assert rec.full_compute_seconds == pytest.approx(4.0) and "no pruning" in rec.reason
    # 0.5 points: the cheap random cell 0.3 points down now qualifies
    assert (recommend(t, 0.005).strategy, recommend(t, 0.005).fraction) == ("random", 0.3)
    # tolerance 0: at or above full data; el2n's 0.5 is cheaper than any fraction 1.0 cell
    assert (recommend(t, 0.0).strategy, recommend(t, 0.0).fraction) == ("el2n", 0.5)
    # a cell 0.3 points down is never recommended at 0.2, however cheap
    for cheap in (0.01, 0.0):
        t2 = curve_table([*(cell(s, f, a, compute=c) for (s, f), (a, c) in COSTED.items()),
                          cell("forgetting", 0.1, 0.967, compute=cheap)])
        assert recommend(t2).strategy == "el2n"


def test_recommend_breaks_cost_ties_by_accuracy_and_falls_back_to_relative_work():
    tied = curve_table([cell("a", 0.5, 0.969, compute=5.0), cell("b", 0.5, 0.9695, compute=5.0),
                        cell("a", 1.0, 0.97, compute=9.0), cell("b", 1.0, 0.97, compute=9.0)])
    assert recommend(tied).strategy == "b"
    # no compute (older results): kept_fraction_of_cleaned × sample_pass_fraction decides; infobatch keeps
    # everything and makes 40% of the passes (0.4), random keeps 30% (0.3)
    t = curve_table([cell("random", 0.3, 0.969), cell("random", 1.0, 0.97),
                     cell("infobatch", 0.4, 0.9695, kept_fraction_of_cleaned=1.0, sample_pass_fraction=0.4)])
    assert cell_cost(t)[0] == "relative_work" and t["compute_seconds"].isna().all()
    rec = recommend(t)
    assert (rec.strategy, rec.fraction, rec.cost, rec.compute_seconds) == ("random", 0.3, "relative_work", None)
    out = curve_table([cell("random", 0.3, 0.96), cell("random", 1.0, 0.97),
                       cell("infobatch", 0.4, 0.9695, kept_fraction_of_cleaned=1.0, sample_pass_fraction=0.4)])
    assert (recommend(out).strategy, recommend(out).fraction) == ("infobatch", 0.4)


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
    t = table_of({"random": {0.5: 0.95, 1.0: 0.97}, "ccs": {0.5: 0.969, 1.0: 0.97}})
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


def test_compute_figure_draws_the_reference_band_and_circles_the_recommendation():
    t = costed_table()
    rec = recommend(t)
    fig = compute_figure(t, rec, title="t")
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert {"random", "el2n", "infobatch"} <= set(labels)
    assert any(lab.startswith("no pruning") for lab in labels) and "within 0.2 pt of full data" in labels
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("total compute (s)")
    (ref,) = [line for line in ax.get_lines() if line.get_label().startswith("no pruning")]
    assert (ref.get_xdata()[0], ref.get_ydata()[0]) == pytest.approx((4.0, 97.0))
    (circle,) = [c for c in ax.collections if c.get_label().startswith("recommended: el2n at 0.3")]
    assert circle.get_offsets()[0].tolist() == pytest.approx([6.0, 96.85])
    (band,) = [p for p in ax.patches if p.get_label().startswith("within")]
    assert (band.get_y(), band.get_y() + band.get_height()) == pytest.approx((96.8, 97.0))  # axhspan: a Rectangle
    png = figure_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # results without compute: drawn against relative work, the reference at 1.0
    plain = compute_figure(table_of({"random": {0.5: 0.97, 1.0: 0.97}}), recommend(table_of({"random": {
        0.5: 0.97, 1.0: 0.97}})))
    assert plain.axes[0].get_xlabel().startswith("relative work") and plain.axes[0].get_xscale() == "linear"


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
    assert rep.compute_title.startswith("Test accuracy against total compute (")
    with pytest.raises(ConfigError, match="different schedules"):
        sweep_report([*results, {**results[0], "fraction": 0.2, "schedule": "same_epochs"}], 0.005)
    with pytest.raises(ConfigError, match="no sweep_models partition"):
        sweep_report([], 0.005)
