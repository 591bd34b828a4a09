"""The per-dataset comparison: every model trained on one dataset, test accuracy against retained fraction
and against total compute.

Pure functions on the frame `mlflow.search_runs` returns (no Dagster, no MLflow import): the
comparison run that `model_evaluation` keeps up to date per dataset digest calls them, and
tests/test_comparison.py checks them. Unlike the sweep's report (one setting, seeds averaged), the
runs here may differ in every setting, so each run is a point and the line per strategy joins the
mean per (strategy, target_fraction) at that group's mean retained_fraction: the one x that means
the same for every run (kept / training split, see core/selection/fractions.py).

Against compute (`compute_seconds`: everything that produced the model, reused work included, as
model_evaluation logs it) the reference is "no pruning": the runs with strategy `none` and retained
fraction 1.0, every pruning step off. The recommended run is the cheapest whose accuracy is within
`tolerance` (0.2 points) of the reference runs' mean accuracy.
"""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from prune_dagster.core.selection.report import (
    BASELINE,
    DEFAULT_TOLERANCE,
    TITLE_WIDTH,
    log_seconds_axis,
    strategy_order,
)

COLUMNS = ["run_id", "run_name", "strategy", "target_fraction", "retained_fraction", "test_accuracy", "n_train",
           "compute_seconds", "start_time", "dagster_run_id"]
_SOURCES = {"run_name": "tags.mlflow.runName", "strategy": "params.strategy",
            "target_fraction": "metrics.target_fraction", "retained_fraction": "metrics.retained_fraction",
            "test_accuracy": "metrics.test_accuracy", "n_train": "metrics.n_train",
            "compute_seconds": "metrics.compute_seconds", "dagster_run_id": "tags.dagster_run_id"}
NO_PRUNING = "none"  # trained_model's strategy name when the score step and dynamic pruning are off


def comparison_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluated model run (COLUMNS), oldest first; runs without a test accuracy or a
    retained fraction (still training, failed, or not model runs) are left out."""
    out = pd.DataFrame({"run_id": runs["run_id"] if "run_id" in runs else pd.Series(dtype=str)})
    for name, column in _SOURCES.items():
        out[name] = runs[column] if column in runs else None
    out["start_time"] = runs["start_time"] if "start_time" in runs else pd.NaT
    out["strategy"] = out["strategy"].fillna("unknown")
    out["compute_seconds"] = pd.to_numeric(out["compute_seconds"], errors="coerce")  # NaN: run logged before it
    out["target_fraction"] = out["target_fraction"].fillna(out["retained_fraction"])
    out = out.dropna(subset=["test_accuracy", "retained_fraction"])
    return out.sort_values(["start_time", "run_id"], ignore_index=True)[COLUMNS]


def group_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean test accuracy and retained fraction per (strategy, target_fraction), with the run count."""
    grouped = frame.groupby(["strategy", "target_fraction"], as_index=False)
    return grouped.agg(retained_fraction=("retained_fraction", "mean"), test_accuracy=("test_accuracy", "mean"),
                       n_runs=("run_id", "size")).sort_values(["strategy", "retained_fraction"], ignore_index=True)


def comparison_figure(frame: pd.DataFrame, title: str):
    """A matplotlib Figure: per strategy, every run as a point and a line through the group means."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8), dpi=100)
    ax = fig.add_subplot()
    means = group_means(frame)
    for i, strategy in enumerate(strategy_order(frame["strategy"])):
        color = "0.4" if strategy == BASELINE else f"C{i}"
        runs, mean = frame[frame["strategy"] == strategy], means[means["strategy"] == strategy]
        ax.scatter(runs["retained_fraction"], runs["test_accuracy"] * 100, s=14, alpha=0.45, color=color)
        ax.plot(mean["retained_fraction"], mean["test_accuracy"] * 100, marker="o", markersize=5, color=color,
                linestyle="--" if strategy == BASELINE else "-", label=f"{strategy} (n={len(runs)})")
    ax.set_xlabel("retained_fraction: kept samples / training split")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(textwrap.fill(title, TITLE_WIDTH), fontsize=10)
    ax.grid(alpha=0.3)
    if len(frame):
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def comparison_title(dataset: str, digest: str, frame: pd.DataFrame) -> str:
    return (f"Test accuracy against retained fraction, {dataset} ({digest[:12]}): {len(frame)} model runs; "
            "points: runs, lines: mean per strategy and target fraction")


def no_pruning_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The "no pruning" reference: runs with strategy `none` that kept the whole training split
    (retained_fraction 1.0: no cleaning step removed anything either)."""
    return frame[(frame["strategy"] == NO_PRUNING) & np.isclose(frame["retained_fraction"].astype(float), 1.0)]


@dataclass(frozen=True)
class ComputeChoice:
    """The reference (no pruning) and the cheapest run within `tolerance` of its mean accuracy; None where
    the frame has no reference run, or no run with a compute_seconds."""

    reference_accuracy: float | None
    reference_compute_seconds: float | None
    run_id: str | None
    compute_seconds: float | None
    test_accuracy: float | None
    tolerance: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cheapest_within(frame: pd.DataFrame, tolerance: float = DEFAULT_TOLERANCE) -> ComputeChoice:
    """The cheapest run (lowest compute_seconds; ties: higher accuracy, then the older run) whose test
    accuracy is at least the reference's mean − `tolerance`; reference runs are candidates too."""
    ref = no_pruning_runs(frame)
    if ref.empty:
        return ComputeChoice(None, None, None, None, None, tolerance)
    accuracy = float(ref["test_accuracy"].mean())
    ref_compute = float(ref["compute_seconds"].mean()) if ref["compute_seconds"].notna().any() else None
    ok = frame[(frame["test_accuracy"] >= accuracy - tolerance - 1e-12) & frame["compute_seconds"].notna()]
    if ok.empty:
        return ComputeChoice(accuracy, ref_compute, None, None, None, tolerance)
    ranked = ok.assign(neg_acc=-ok["test_accuracy"], order=np.arange(len(ok)))
    row = ranked.sort_values(["compute_seconds", "neg_acc", "order"], kind="stable").iloc[0]
    return ComputeChoice(accuracy, ref_compute, str(row["run_id"]), float(row["compute_seconds"]),
                         float(row["test_accuracy"]), tolerance)


def compute_figure(frame: pd.DataFrame, choice: ComputeChoice, title: str):
    """A matplotlib Figure: each run with a compute_seconds as a point (accuracy against total compute,
    log x), coloured per strategy; the "no pruning" runs as black diamonds with the band down to their
    mean − tolerance; the recommended run circled."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8), dpi=100)
    ax = fig.add_subplot()
    timed = frame[frame["compute_seconds"].notna()]
    ref_ids = set(no_pruning_runs(timed)["run_id"])
    for i, strategy in enumerate(strategy_order(frame["strategy"])):  # colours as in comparison_figure
        runs = timed[(timed["strategy"] == strategy) & ~timed["run_id"].isin(ref_ids)]
        if len(runs):
            ax.scatter(runs["compute_seconds"], runs["test_accuracy"] * 100, s=24, alpha=0.75,
                       color="0.4" if strategy == BASELINE else f"C{i}", label=f"{strategy} (n={len(runs)})")
    ref = timed[timed["run_id"].isin(ref_ids)]
    if len(ref):
        ax.scatter(ref["compute_seconds"], ref["test_accuracy"] * 100, s=70, marker="D", color="black",
                   label=f"no pruning (strategy none, retained 1.0; n={len(ref)})")
    if choice.reference_accuracy is not None:
        full, band = choice.reference_accuracy * 100, choice.tolerance * 100
        ax.axhspan(full - band, full, color="tab:green", alpha=0.12, label=f"within {band:.2g} pt of no pruning")
    hit = timed[timed["run_id"] == choice.run_id]
    if len(hit):
        ax.scatter(hit["compute_seconds"], hit["test_accuracy"] * 100, s=340, facecolors="none", edgecolors="red",
                   linewidths=2, zorder=5, label=f"recommended: {hit.iloc[0]['run_name'] or choice.run_id}")
    log_seconds_axis(ax, timed["compute_seconds"])
    ax.set_xlabel("compute_seconds: source, every pruning step, representation and training (reused work included)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(textwrap.fill(title, TITLE_WIDTH), fontsize=10)
    ax.grid(alpha=0.3, which="both")
    if len(timed):
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def compute_title(dataset: str, digest: str, frame: pd.DataFrame) -> str:
    n_timed = int(frame["compute_seconds"].notna().sum())
    untimed = len(frame) - n_timed
    return (f"Test accuracy against total compute, {dataset} ({digest[:12]}): {n_timed} model runs"
            + (f" ({untimed} older runs without compute_seconds left out)" if untimed else "")
            + "; diamonds: no pruning, circled: the cheapest run within tolerance of it")
