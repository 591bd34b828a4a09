"""The pruning report: accuracy against retained fraction and against compute, area under each curve,
a recommended setting.

Pure functions on a table of sweep results (no Dagster, no MLflow): the `pruning_report` asset and
the benchmarks call them, and tests/test_report.py checks them on tables whose answer is known.

A sweep result is one (strategy, fraction) cell: the test accuracy of each seed's model plus a few
counts and its total compute. `curve_table` turns a list of them into one row per cell with mean, std
(ddof=1) and standard error over seeds; everything else works on that table.
"""

from __future__ import annotations

import base64
import io
import math
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.params import Params

BASELINE = "random"
TITLE_WIDTH = 90  # characters per title line: what fits the 7.5-inch figure at font size 10
TABLE_COLUMNS = ["strategy", "fraction", "kept_fraction_of_cleaned", "sample_pass_fraction", "n_train", "n_seeds",
                 "mean_accuracy", "std_accuracy", "sem_accuracy", "train_seconds", "compute_seconds",
                 "compute_sample_passes"]
DEFAULT_TOLERANCE = 0.002  # 0.2 points of accuracy (one of digits' 359 test samples is 0.28)


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value)."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def optional_float(value: Any) -> float:
    """A float, NaN for None (a result written before the field existed)."""
    return float("nan") if value is None else float(value)


def curve_table(results: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (strategy, fraction), sorted by strategy then fraction.

    Each result needs `strategy`, `fraction` (the target_fraction) and `accuracies` (one per seed);
    `kept_fraction_of_cleaned`, `sample_pass_fraction` (see core/selection/fractions.py), `n_train`,
    `train_seconds` (one per seed), `compute_seconds` and `compute_sample_passes` (the cell's total
    compute, core.selection.sweep.partition_compute; NaN when absent, as in older results) are optional.
    """
    rows = []
    for r in results:
        acc = [float(a) for a in r["accuracies"]]
        if not acc:
            raise ConfigError(f"result {r['strategy']}@{r['fraction']}: no accuracies; expected one per seed")
        mean, std = mean_std(acc)
        seconds = r.get("train_seconds") or [float("nan")]
        rows.append({
            "strategy": str(r["strategy"]),
            "fraction": float(r["fraction"]),
            "kept_fraction_of_cleaned": float(r.get("kept_fraction_of_cleaned", r["fraction"])),
            "sample_pass_fraction": float(r.get("sample_pass_fraction", 1.0)),
            "n_train": int(r.get("n_train", 0)),
            "n_seeds": len(acc),
            "mean_accuracy": mean,
            "std_accuracy": std,
            "sem_accuracy": std / math.sqrt(len(acc)),
            "train_seconds": float(np.mean(seconds)),
            "compute_seconds": optional_float(r.get("compute_seconds")),
            "compute_sample_passes": optional_float(r.get("compute_sample_passes")),
        })
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    if table.duplicated(["strategy", "fraction"]).any():
        dup = table[table.duplicated(["strategy", "fraction"])].iloc[0]
        raise ConfigError(f"two results for strategy {dup.strategy!r} at fraction {dup.fraction}; expected one")
    return table.sort_values(["strategy", "fraction"], ignore_index=True)


def area_under_curves(table: pd.DataFrame) -> dict[str, float]:
    """Trapezoidal area under mean accuracy against fraction, per strategy, over its swept fractions.

    Over [0.1, 1.0] a flat curve at accuracy a has area 0.9·a. Only comparable between strategies
    swept over the same fractions (the sweep's partitions guarantee that); a single point gives 0.
    """
    out = {}
    for strategy, g in table.groupby("strategy", sort=False):
        g = g.sort_values("fraction")
        out[str(strategy)] = float(np.trapezoid(g["mean_accuracy"], g["fraction"])) if len(g) > 1 else 0.0
    return out


@dataclass(frozen=True)
class Recommendation:
    """The cheapest (strategy, fraction) cell whose mean accuracy is within `tolerance` of full data.

    `fraction` is None when the table has no full-data (fraction 1.0) row to compare with. `cost` names
    what "cheapest" was measured by: `compute_seconds`, or `relative_work` (kept_fraction_of_cleaned ×
    sample_pass_fraction) for results without compute. `full_compute_seconds` is the "no pruning"
    reference's cost, approximated by the fraction 1.0 cells' training alone (no cleaning, no
    representation, no scoring).
    """

    fraction: float | None
    strategy: str | None
    accuracy: float | None
    full_accuracy: float | None
    tolerance: float
    reason: str
    compute_seconds: float | None = None
    full_compute_seconds: float | None = None
    cost: str = "compute_seconds"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def full_data_accuracy(table: pd.DataFrame) -> float | None:
    """Mean accuracy at fraction 1.0, pooled over every strategy's seeds (all train on the same set)."""
    full = table[np.isclose(table["fraction"], 1.0)]
    if full.empty:
        return None
    return float((full["mean_accuracy"] * full["n_seeds"]).sum() / full["n_seeds"].sum())


def full_data_compute(table: pd.DataFrame) -> float | None:
    """The "no pruning" reference's compute seconds: the fraction 1.0 cells' mean training seconds alone.
    An approximation: the sweep's full-data models train on the cleaned set, but a run with every step
    off pays no cleaning, representation or scoring, which is what this leaves out."""
    full = table[np.isclose(table["fraction"], 1.0)]["train_seconds"].dropna()
    return None if full.empty else float(full.mean())


def cell_cost(table: pd.DataFrame) -> tuple[str, pd.Series]:
    """What a cell costs: its `compute_seconds` when every row has one, else its relative work,
    kept_fraction_of_cleaned × sample_pass_fraction (kept share, not the target `fraction`: a dynamic
    strategy keeps everything and its fraction is already its share of passes)."""
    if len(table) and table["compute_seconds"].notna().all():
        return "compute_seconds", table["compute_seconds"]
    return "relative_work", table["kept_fraction_of_cleaned"] * table["sample_pass_fraction"]


def recommend(table: pd.DataFrame, tolerance: float = DEFAULT_TOLERANCE) -> Recommendation:
    """The cheapest cell (lowest `compute_seconds`; lowest relative work when compute is missing, see
    `cell_cost`) whose mean accuracy is at least full-data accuracy − `tolerance`. Ties go to the higher
    mean accuracy, then the strategy name, then the smaller fraction.

    One rule for every strategy, static or dynamic: what a setting costs and whether it keeps accuracy.
    With a few seeds a cell can pass by luck; the figures' error bars show how far to trust it.
    """
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ConfigError(f"tolerance={tolerance!r}; expected an accuracy difference >= 0, e.g. 0.002 = 0.2 points")
    full, full_compute = full_data_accuracy(table), full_data_compute(table)
    if full is None:
        return Recommendation(None, None, None, None, tolerance,
                              "no fraction 1.0 in the sweep: nothing to compare with")
    ok = table[table["mean_accuracy"] >= full - tolerance - 1e-12]
    if ok.empty:  # a fraction 1.0 cell is at or above the pooled mean, so only NaN accuracies get here
        return Recommendation(None, None, None, full, tolerance, "no cell reaches full-data accuracy minus the "
                              "tolerance", full_compute_seconds=full_compute)
    cost, values = cell_cost(table)  # over the whole table, so the compute figure's x says the same
    ranked = ok.assign(cost=values[ok.index], neg_acc=-ok["mean_accuracy"]).sort_values(
        ["cost", "neg_acc", "strategy", "fraction"], kind="stable")
    row = ranked.iloc[0]
    compute = float(row["compute_seconds"]) if math.isfinite(row["compute_seconds"]) else None
    reason = (f"cheapest setting ({cost}) whose mean accuracy is within {tolerance * 100:.2g} points of full data "
              f"({full:.4f})")
    if compute is not None and full_compute is not None:
        reason += (f"; {compute:.3g} s against {full_compute:.3g} s for no pruning "
                   f"(fraction 1.0 training alone, approximated)")
    return Recommendation(float(row["fraction"]), str(row["strategy"]), float(row["mean_accuracy"]), full, tolerance,
                          reason, compute, full_compute, cost)


def versus_baseline(table: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Per fraction below 1.0: the best non-baseline strategy against the baseline.

    `diff` = best mean − baseline mean; `se_diff` = √(sem_best² + sem_baseline²), the standard error
    of that difference over seeds; `beats` = diff > se_diff.
    """
    rows = []
    base = table[table["strategy"] == baseline].set_index("fraction")
    for fraction, g in table[table["strategy"] != baseline].groupby("fraction"):
        if fraction >= 1.0 or fraction not in base.index or g.empty:
            continue
        top = g.sort_values(["mean_accuracy", "strategy"], ascending=[False, True]).iloc[0]
        b = base.loc[fraction]
        diff = float(top["mean_accuracy"] - b["mean_accuracy"])
        se = math.sqrt(float(top["sem_accuracy"]) ** 2 + float(b["sem_accuracy"]) ** 2)
        rows.append({"fraction": float(fraction), "best_strategy": top["strategy"],
                     "best_mean": float(top["mean_accuracy"]), "best_sem": float(top["sem_accuracy"]),
                     "baseline_mean": float(b["mean_accuracy"]), "baseline_sem": float(b["sem_accuracy"]),
                     "n_seeds": int(min(top["n_seeds"], b["n_seeds"])),
                     "diff": diff, "se_diff": se, "beats": bool(diff > se)})
    return pd.DataFrame(rows, columns=["fraction", "best_strategy", "best_mean", "best_sem", "baseline_mean",
                                       "baseline_sem", "n_seeds", "diff", "se_diff", "beats"])


def report_frame(table: pd.DataFrame, rec: Recommendation, aucs: Mapping[str, float]) -> pd.DataFrame:
    """The table behind the figure, as written to pruning_report.csv: the curve table plus the
    strategy's area under the curve, whether the cell is within tolerance of full data, and which
    row is the recommendation (`is_recommended`, at most one row)."""
    out = table.copy()
    out["auc"] = out["strategy"].map(lambda s: aucs.get(s, float("nan")))
    if rec.full_accuracy is None:
        out["within_tolerance"] = False
    else:
        out["within_tolerance"] = out["mean_accuracy"] >= rec.full_accuracy - rec.tolerance - 1e-12
    out["is_recommended"] = (out["strategy"] == rec.strategy) & np.isclose(
        out["fraction"], rec.fraction if rec.fraction is not None else -1.0)
    return out


def strategy_order(strategies: Iterable[str], baseline: str = BASELINE) -> list[str]:
    """Baseline first, then the others in the order given (duplicates dropped)."""
    seen = list(dict.fromkeys(strategies))
    return ([baseline] if baseline in seen else []) + [s for s in seen if s != baseline]


def figure(table: pd.DataFrame, rec: Recommendation | None = None, aucs: Mapping[str, float] | None = None,
           title: str = "Test accuracy against retained fraction", order: Iterable[str] | None = None):
    """A matplotlib Figure: one line per strategy, mean ± std over seeds as error bars, the full-data
    tolerance band and the recommended point. Built on `matplotlib.figure.Figure` (no pyplot state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8), dpi=100)
    ax = fig.add_subplot()
    strategies = strategy_order(order if order is not None else table["strategy"].unique())
    for strategy in strategies:
        g = table[table["strategy"] == strategy].sort_values("fraction")
        if g.empty:
            continue
        label = strategy if aucs is None or strategy not in aucs else f"{strategy} (AUC {aucs[strategy]:.3f})"
        style = {"linestyle": "--", "color": "0.4"} if strategy == BASELINE else {}
        ax.errorbar(g["fraction"], g["mean_accuracy"] * 100, yerr=g["std_accuracy"].fillna(0) * 100,
                    marker="o", markersize=4, capsize=3, label=label, **style)
    if rec is not None and rec.full_accuracy is not None:
        full = rec.full_accuracy * 100
        ax.axhspan(full - rec.tolerance * 100, full, color="tab:green", alpha=0.12,
                   label=f"within {rec.tolerance * 100:.2g} pt of full data")
        if rec.fraction is not None:
            ax.plot([rec.fraction], [rec.accuracy * 100], marker="*", markersize=16, color="gold",
                    markeredgecolor="black", linestyle="none",
                    label=f"recommended: {rec.fraction:g} by {rec.strategy}")
    ax.set_xlabel("target_fraction: share of the cleaned training set kept (dynamic: of the sample passes)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(textwrap.fill(title, TITLE_WIDTH), fontsize=10)  # one long line would run off the figure
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def compute_figure(table: pd.DataFrame, rec: Recommendation | None = None,
                   title: str = "Test accuracy against total compute", order: Iterable[str] | None = None):
    """A matplotlib Figure: mean accuracy against each cell's total compute (cleaning chain, shared
    representation, scoring, training; log x), one marker series per strategy (error bars = std over
    seeds), the "no pruning" reference as a black diamond with the band down to it − tolerance, and the
    recommended cell circled. Cells without compute are drawn against their relative work (`cell_cost`)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8), dpi=100)
    ax = fig.add_subplot()
    cost, x = cell_cost(table)
    for strategy in strategy_order(order if order is not None else table["strategy"].unique()):
        g = table[table["strategy"] == strategy]
        if not g.empty:  # the colour cycle as in `figure`, so a strategy has one colour in both
            style = {"color": "0.4", "marker": "s"} if strategy == BASELINE else {"marker": "o"}
            ax.errorbar(x[g.index], g["mean_accuracy"] * 100, yerr=g["std_accuracy"].fillna(0) * 100,
                        markersize=5, capsize=3, linestyle="none", label=strategy, **style)
    if rec is not None and rec.full_accuracy is not None:
        full, band = rec.full_accuracy * 100, rec.tolerance * 100
        ax.axhspan(full - band, full, color="tab:green", alpha=0.12, label=f"within {band:.2g} pt of full data")
        ref_x = rec.full_compute_seconds if cost == "compute_seconds" else 1.0
        if ref_x is not None:
            ax.plot([ref_x], [full], marker="D", markersize=9, color="black", linestyle="none",
                    label="no pruning (≈ fraction 1.0 training alone)")
        hit = table[(table["strategy"] == rec.strategy) & np.isclose(table["fraction"], rec.fraction or -1.0)]
        if not hit.empty:
            ax.scatter(x[hit.index], hit["mean_accuracy"] * 100, s=340, facecolors="none", edgecolors="red",
                       linewidths=2, zorder=5, label=f"recommended: {rec.strategy} at {rec.fraction:g}")
    if cost == "compute_seconds":
        log_seconds_axis(ax, x)
    ax.set_xlabel("total compute (s): cleaning + representation + scoring + training" if cost == "compute_seconds"
                  else "relative work: kept_fraction_of_cleaned × sample_pass_fraction")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(textwrap.fill(title, TITLE_WIDTH), fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def log_seconds_axis(ax: Any, seconds: pd.Series) -> None:
    """Log x when every value is positive (costs differ by factors, not by seconds), ticks in plain seconds."""
    from matplotlib.ticker import FuncFormatter

    if len(seconds) and (seconds > 0).all():
        ax.set_xscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)
        if seconds.max() / seconds.min() < 20:  # within about a decade the minor ticks are the only labels
            ax.xaxis.set_minor_formatter(plain)


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def markdown_image(png: bytes, alt: str = "figure") -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-style Markdown table (no tabulate dependency); '|' inside a cell is escaped."""
    def cell(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return "" if math.isnan(v) else f"{v:.{digits}g}" if abs(v) >= 10 else f"{v:.{digits}f}"
        return str(v).replace("|", "\\|")  # a '|' in a value (partition keys '0.1|el2n') would split the cell

    head = "| " + " | ".join(cell(str(c)) for c in frame.columns) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, sep, *body])


class ReportParams(Params):
    """How the pruning report picks its recommended setting."""

    tolerance: float = Field(DEFAULT_TOLERANCE, ge=0, le=1,
                             description="Recommended = the cheapest (strategy, fraction) whose mean accuracy is "
                                         "within this of full data (0.002 = 0.2 points).")


@dataclass(frozen=True)
class SweepReport:
    """Everything the pruning report shows, computed from the sweep's partition results."""

    table: pd.DataFrame  # curve_table
    frame: pd.DataFrame  # report_frame: what pruning_report.csv holds
    aucs: dict[str, float]
    rec: Recommendation
    versus: pd.DataFrame
    schedule: str
    epochs: int
    sweep_ids: list[str]
    title: str
    compute_title: str = "Test accuracy against total compute"

    def summary(self, n_expected: int) -> dict[str, Any]:
        """What pruning_report.json holds."""
        return {"recommendation": self.rec.as_dict(), "auc": self.aucs, "sweep_ids": self.sweep_ids,
                "schedule": self.schedule, "epochs_full_data": self.epochs, "n_partitions": len(self.table),
                "n_partitions_expected": n_expected, "versus_random": self.versus.to_dict(orient="records")}


def sweep_report(results: Iterable[Mapping[str, Any]], tolerance: float) -> SweepReport:
    """The report over the sweep's results (each as `core.selection.sweep.partition_result` makes it)."""
    results = list(results)
    if not results:
        raise ConfigError("no sweep_models partition is materialized yet; run sweep_job or backfill sweep_models")
    schedules = {(r["schedule"], r["epochs_full_data"]) for r in results}
    if len(schedules) > 1:
        raise ConfigError(f"sweep partitions were trained under different schedules {sorted(schedules)}: the "
                          "curves would not be comparable; rerun the sweep with one schedule")
    schedule, epochs = schedules.pop()
    table = curve_table(results)
    aucs = area_under_curves(table)
    rec = recommend(table, tolerance)
    n_seeds = "/".join(map(str, sorted(set(table["n_seeds"]))))
    setting = (f"({results[0].get('n_clean', '?')} cleaned samples; {schedule}, {epochs} epochs at full data; "
               f"mean ± std over {n_seeds} seeds)")
    return SweepReport(table=table, frame=report_frame(table, rec, aucs), aucs=aucs, rec=rec,
                       versus=versus_baseline(table), schedule=schedule, epochs=int(epochs),
                       sweep_ids=sorted({str(r.get("sweep_id", "")) for r in results}),
                       title=f"Test accuracy against retained fraction {setting}",
                       compute_title=f"Test accuracy against total compute {setting}")
