"""The per-dataset comparison: every model trained on one dataset, test accuracy against retained fraction.

Pure functions on the frame `mlflow.search_runs` returns (no Dagster, no MLflow import): the
comparison run that `model_evaluation` keeps up to date per dataset digest calls them, and
tests/test_comparison.py checks them. Unlike the sweep's report (one setting, seeds averaged), the
runs here may differ in every setting, so each run is a point and the line per strategy joins the
mean per (strategy, target_fraction) at that group's mean retained_fraction: the one x that means
the same for every run (kept / training split, see core/selection/fractions.py).
"""

from __future__ import annotations

import textwrap

import pandas as pd

from prune_dagster.core.selection.report import BASELINE, TITLE_WIDTH, strategy_order

COLUMNS = ["run_id", "run_name", "strategy", "target_fraction", "retained_fraction", "test_accuracy", "n_train",
           "start_time", "dagster_run_id"]
_SOURCES = {"run_name": "tags.mlflow.runName", "strategy": "params.strategy",
            "target_fraction": "metrics.target_fraction", "retained_fraction": "metrics.retained_fraction",
            "test_accuracy": "metrics.test_accuracy", "n_train": "metrics.n_train",
            "dagster_run_id": "tags.dagster_run_id"}


def comparison_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluated model run (COLUMNS), oldest first; runs without a test accuracy or a
    retained fraction (still training, failed, or not model runs) are left out."""
    out = pd.DataFrame({"run_id": runs["run_id"] if "run_id" in runs else pd.Series(dtype=str)})
    for name, column in _SOURCES.items():
        out[name] = runs[column] if column in runs else None
    out["start_time"] = runs["start_time"] if "start_time" in runs else pd.NaT
    out["strategy"] = out["strategy"].fillna("unknown")
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
