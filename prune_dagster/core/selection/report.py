"""The pruning report: accuracy against retained fraction, area under each curve, a recommended fraction.

Pure functions on a table of sweep results (no Dagster, no MLflow): the `pruning_report` asset and
the benchmarks call them, and tests/test_report.py checks them on tables whose answer is known.

A sweep result is one (strategy, fraction) cell: the test accuracy of each seed's model plus a few
counts. `curve_table` turns a list of them into one row per cell with mean, std (ddof=1) and standard
error over seeds; everything else works on that table.
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
                 "mean_accuracy", "std_accuracy", "sem_accuracy", "train_seconds"]


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value)."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def curve_table(results: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (strategy, fraction), sorted by strategy then fraction.

    Each result needs `strategy`, `fraction` (the target_fraction) and `accuracies` (one per seed);
    `kept_fraction_of_cleaned`, `sample_pass_fraction` (see core/selection/fractions.py), `n_train`
    and `train_seconds` (one per seed) are optional.
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
    """The smallest retained fraction that keeps accuracy within `tolerance` of full data, and by which strategy.

    `fraction` is None when the table has no full-data (fraction 1.0) row to compare with.
    """

    fraction: float | None
    strategy: str | None
    accuracy: float | None
    full_accuracy: float | None
    tolerance: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def full_data_accuracy(table: pd.DataFrame) -> float | None:
    """Mean accuracy at fraction 1.0, pooled over every strategy's seeds (all train on the same set)."""
    full = table[np.isclose(table["fraction"], 1.0)]
    if full.empty:
        return None
    return float((full["mean_accuracy"] * full["n_seeds"]).sum() / full["n_seeds"].sum())


def recommend(table: pd.DataFrame, tolerance: float = 0.005) -> Recommendation:
    """Smallest fraction f and a strategy whose mean accuracy stays within `tolerance` of full data
    at f and at every larger fraction that strategy was swept at.

    "Stays within" rather than "is within at f": with a few seeds one lucky cell below a failing one
    would otherwise be recommended; on a curve that rises with f the two rules agree. Ties on f go
    to the higher mean accuracy, then to the strategy name.
    """
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ConfigError(f"tolerance={tolerance!r}; expected an accuracy difference >= 0, e.g. 0.005 = 0.5 points")
    full = full_data_accuracy(table)
    if full is None:
        return Recommendation(None, None, None, None, tolerance,
                              "no fraction 1.0 in the sweep: nothing to compare with")
    floor = full - tolerance - 1e-12
    best: tuple[float, float, str] | None = None  # (fraction, -accuracy, strategy)
    for strategy, g in table.groupby("strategy", sort=False):
        g = g.sort_values("fraction", ascending=False)
        ok = (g["mean_accuracy"] >= floor).to_numpy()
        n_ok = len(ok) if ok.all() else int(np.argmin(ok))  # leading run of passes from the largest fraction
        if n_ok == 0:
            continue
        row = g.iloc[n_ok - 1]
        candidate = (float(row["fraction"]), -float(row["mean_accuracy"]), str(strategy))
        if best is None or candidate < best:
            best = candidate
    if best is None:
        return Recommendation(None, None, None, full, tolerance,
                              "no strategy reaches full-data accuracy minus the tolerance, "
                              "even at its largest fraction")
    fraction, neg_acc, strategy = best
    return Recommendation(fraction, strategy, -neg_acc, full, tolerance,
                          f"smallest fraction from which {strategy}'s mean accuracy stays within "
                          f"{tolerance * 100:.2g} points of full data ({full:.4f})")


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
    """How the pruning report picks its recommended fraction."""

    tolerance: float = Field(0.005, ge=0, le=1, description="Recommended = the smallest fraction whose mean accuracy "
                                                            "stays within this of full data (0.005 = 0.5 points).")


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
    title = (f"Test accuracy against retained fraction ({results[0].get('n_clean', '?')} cleaned samples; "
             f"{schedule}, {epochs} epochs at full data; mean ± std over {n_seeds} seeds)")
    return SweepReport(table=table, frame=report_frame(table, rec, aucs), aucs=aucs, rec=rec,
                       versus=versus_baseline(table), schedule=schedule, epochs=int(epochs),
                       sweep_ids=sorted({str(r.get("sweep_id", "")) for r in results}), title=title)
