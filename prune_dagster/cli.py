"""`prune-dagster run`: materialize the whole graph on a persistent Dagster instance and print a summary."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from prune_dagster import paths
from prune_dagster.core.infra.locks import file_lock


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`asset.key=value` → Dagster run config ({"ops": {asset: {"config": {key: value}}}})."""
    ops: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair or "." not in pair.split("=", 1)[0]:
            raise SystemExit(f"--set {pair!r}: expected ASSET.KEY=VALUE, e.g. pruned_dataset.retained_fraction=0.5")
        key, raw = pair.split("=", 1)
        asset, field = key.split(".", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        ops.setdefault(asset, {"config": {}})["config"][field] = value
    return {"ops": ops} if ops else {}


def format_summary(summary: dict[str, Any], dagster_home: str) -> str:
    lines = [f"dataset {summary['dataset']}: {summary['n_samples']} samples, "
             f"{summary['n_train_split']} train / {summary['n_test']} test (test set never pruned)", ""]
    lines.append(f"  {'step':<22}{'in':>7}{'kept':>7}  removed by reason")
    for s in summary["steps"]:
        reasons = ", ".join(f"{k}={v}" for k, v in s["removed_by_reason"].items()) or "-"
        lines.append(f"  {s['step']:<22}{s['n_in']:>7}{s['n_out']:>7}  {reasons}  ({s['seconds']:.1f}s)")
    lines += [
        "",
        f"kept {summary['n_kept']} of {summary['n_train_split']} training samples "
        f"(overall retained fraction {summary['overall_retained_fraction']:.3f}; "
        f"score step kept {summary['retained_fraction']:.3f} of the cleaned set), "
        f"{summary['n_synthetic']} synthetic",
        f"test accuracy {summary['test_accuracy']:.4f} on {summary['n_test']} held-out samples",
        f"MLflow run {summary['mlflow_run_id']} in {summary['mlflow_tracking_uri']}  (UI: make mlflow-ui)",
        f"Dagster run {summary['dagster_run_id']} in DAGSTER_HOME={dagster_home}  "
        f"(UI: make ui, then http://127.0.0.1:3000/runs/{summary['dagster_run_id']})",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    default_home = str(paths.data_dir() / "dagster_home")
    os.environ.setdefault("DAGSTER_HOME", default_home)
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    if os.environ["DAGSTER_HOME"] == default_home:  # our own home: an empty dagster.yaml = the defaults
        (Path(default_home) / "dagster.yaml").touch()
    if args.dataset:
        os.environ["PRUNE_DATASET"] = args.dataset
    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    from prune_dagster.definitions import defs

    start = time.perf_counter()
    # Two runs starting at once on a new home would race to create its SQLite tables.
    with file_lock(Path(os.environ["DAGSTER_HOME"]) / ".prune-init.lock", what="DAGSTER_HOME"):
        instance = dg.DagsterInstance.get()
        instance.get_run_records(limit=1)
        instance.get_latest_materialization_event(dg.AssetKey("raw_dataset"))
    with instance:
        job = defs.resolve_job_def(args.job)
        run_config = parse_overrides(args.set)
        # The step-by-step event log is in the Dagster UI; the console gets warnings and the summary.
        run_config["loggers"] = {"console": {"config": {"log_level": "DEBUG" if args.verbose else "WARNING"}}}
        tags = None
        if job.partitions_def is not None:  # sweep_job: one run over every partition
            from prune_dagster.defs.assets.sweep import all_partitions_tags

            tags = all_partitions_tags(job.partitions_def)
        result = job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False, tags=tags)
    seconds = time.perf_counter() - start
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                err = event.step_failure_data.error
                print(f"step {event.step_key} failed: {err.message.strip() if err else ''}", file=sys.stderr)
        print(f"run {result.run_id} failed; see `make ui` for the full log", file=sys.stderr)
        return 1
    summary_path = paths.output_dir() / "runs" / result.run_id / "summary.json"
    if args.job == "prune_job" and summary_path.exists():
        print(format_summary(json.loads(summary_path.read_text()), os.environ["DAGSTER_HOME"]))
        print(f"outputs: {summary_path.parent}")
    print(f"{args.job} finished in {seconds:.1f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prune-dagster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="materialize the pruning graph and print a summary")
    p.add_argument("--dataset", help="digits (default), dirty-digits, an .npz path or an image folder")
    p.add_argument("--job", default="prune_job", help="prune_job (default), train_job or sweep_job")
    p.add_argument("--set", action="append", default=[], metavar="ASSET.KEY=VALUE",
                   help="override a step's config, e.g. pruned_dataset.retained_fraction=0.5")
    p.add_argument("--verbose", action="store_true", help="print Dagster's full event log")
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
