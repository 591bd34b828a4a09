"""The full sweep (sweep_job over every partition) on a fresh Dagster home, output folder and MLflow store,
timed end to end, with the time split into imports, the cleaning chain, scoring, training, MLflow and
what is left: Dagster's own overhead.

    python benchmarks/sweep.py [--dataset digits] [--seeds 3] [--threads 1] [--epochs 20]
                               [--schedule same_steps] [--probe] [--out NAME]
                               [--strategies random,el2n,...] [--fractions 0.1,0.5,1.0] [--augment shift]

`--dataset` is a named source or a file (e.g. data/mnist/mnist.npz, see benchmarks/real.py);
`--strategies` / `--fractions` set the partitions (PRUNE_SWEEP_STRATEGIES / PRUNE_SWEEP_FRACTIONS in
the child); `--augment` is sweep_models' augmentation (none, shift, standard).

Runs the sweep in a child process (so process start and imports count, as for a real run) and writes
benchmarks/results/sweep_<dataset>_s<seeds>.json (or NAME) with the timings, the accuracy table,
areas under the curves, the recommendation and the comparison with random. --probe also times one
partition launched on its own (`dagster asset materialize --partition`), i.e. what a backfill with
one run per partition pays per partition, to compare with the single run.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def run_config(args: argparse.Namespace, seeds: int | None = None) -> dict:
    return {"ops": {
        "raw_dataset": {"config": {"source": args.dataset}},
        "sweep_scores": {"config": {"torch_threads": args.threads}},
        "sweep_models": {"config": {"n_seeds": seeds or args.seeds, "epochs": args.epochs, "schedule": args.schedule,
                                    "torch_threads": args.threads, "augment": args.augment,
                                    "max_shift": args.max_shift,
                                    "sweep_id": f"bench-{dataset_name(args)}-s{args.seeds}"}},
    }}


def dataset_name(args: argparse.Namespace) -> str:
    """'digits', or a file source's stem ('mnist' for data/mnist/mnist.npz)."""
    return Path(args.dataset).stem if ("/" in args.dataset or "." in args.dataset) else args.dataset


def worker(args: argparse.Namespace) -> None:
    """In the child: import, run sweep_job over every partition, dump timings and results."""
    t0 = time.perf_counter()
    import dagster as dg

    from prune_dagster.definitions import defs
    from prune_dagster.defs.assets.sweep import all_partitions_tags
    t_import = time.perf_counter() - t0
    job = defs.resolve_job_def("sweep_job")
    start = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, run_config=run_config(args),
                                        tags=all_partitions_tags(job.partitions_def), raise_on_error=True)
        run_seconds = time.perf_counter() - start
        steps: dict[str, float] = {}
        begun: dict[str, float] = {}
        for entry in instance.all_logs(result.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type_value == "STEP_START":
                begun[event.step_key] = entry.timestamp
            elif event.event_type_value == "STEP_SUCCESS":
                steps[event.step_key] = round(entry.timestamp - begun[event.step_key], 3)
        meta = {}
        for name in ("features_selected", "sweep_scores", "pruning_report"):
            ev = instance.get_latest_materialization_event(dg.AssetKey(name))
            meta[name] = {k: v.value for k, v in ev.asset_materialization.metadata.items()
                          if isinstance(v.value, int | float | str | dict | list) and k not in ("figure", "table")}
        records = instance.fetch_materializations(dg.AssetKey("sweep_models"), limit=1).records
        models_meta = {k: v.value for k, v in records[0].asset_materialization.metadata.items()
                       if isinstance(v.value, int | float | str)}
        selection = instance.get_latest_materialization_event(dg.AssetKey("features_selected"))
    out = {"import_seconds": round(t_import, 2), "run_seconds": round(run_seconds, 2), "step_seconds": steps,
           "run_id": result.run_id, "metadata": meta, "sweep_models": models_meta,
           "features_selected_run": selection.run_id}
    Path(args.worker_out).write_text(json.dumps(out, indent=1, default=str))


def table_markdown(table, column="mean_accuracy") -> str:
    """strategies × fractions, 'mean ± std' in percent."""
    fractions = sorted(table["fraction"].unique())
    lines = ["| strategy | " + " | ".join(f"{f:g}" for f in fractions) + " | AUC |",
             "|---|" + "---|" * (len(fractions) + 1)]
    for strategy, g in table.groupby("strategy", sort=False):
        g = g.set_index("fraction")
        cells = [f"{100 * g.loc[f, column]:.1f} ± {100 * g.loc[f, 'std_accuracy']:.1f}" if f in g.index else ""
                 for f in fractions]
        lines.append(f"| {strategy} | " + " | ".join(cells) + f" | {g['auc'].iloc[0]:.4f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--schedule", default="same_steps")
    ap.add_argument("--probe", action="store_true", help="also time one partition launched as its own run")
    ap.add_argument("--out", default="")
    ap.add_argument("--strategies", default="", help="comma-separated; default every strategy")
    ap.add_argument("--fractions", default="", help="comma-separated; default 0.1, 0.2, ..., 1.0")
    ap.add_argument("--augment", default="none", choices=("none", "shift", "standard"))
    ap.add_argument("--max-shift", type=int, default=2, help="augmentation: largest shift per axis, in pixels")
    ap.add_argument("--worker-out", default="")
    args = ap.parse_args()
    if args.worker_out:
        worker(args)
        return

    import pandas as pd

    from prune_dagster.core.selection import report

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "dh").mkdir()
        env = {**os.environ, "DAGSTER_HOME": str(tmp / "dh"), "PRUNE_OUTPUT_DIR": str(tmp / "out"),
               "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "PYTHONWARNINGS": "ignore"}
        env.pop("PRUNE_SWEEP_STRATEGIES", None)
        env.pop("PRUNE_SWEEP_FRACTIONS", None)
        if args.strategies:
            env["PRUNE_SWEEP_STRATEGIES"] = args.strategies
        if args.fractions:
            env["PRUNE_SWEEP_FRACTIONS"] = args.fractions
        worker_out = tmp / "worker.json"
        cmd = [sys.executable, __file__, "--dataset", args.dataset, "--seeds", str(args.seeds), "--threads",
               str(args.threads), "--epochs", str(args.epochs), "--schedule", args.schedule,
               "--augment", args.augment, "--max-shift", str(args.max_shift), "--worker-out", str(worker_out)]
        start = time.perf_counter()
        with open(tmp / "worker.log", "wb") as log:
            code = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - start
        if code:
            sys.exit(f"the sweep failed; its log ends:\n{(tmp / 'worker.log').read_text()[-4000:]}")
        load_after = os.getloadavg()
        w = json.loads(worker_out.read_text())
        folder = tmp / "out" / "runs" / w["run_id"]
        frame = pd.read_csv(folder / "pruning_report.csv")
        summary = json.loads((folder / "pruning_report.json").read_text())
        results = [json.loads(p.read_text()) for p in sorted((folder / "sweep_models").glob("*.json"))]
        probe = None
        if args.probe:
            probe_config = {"ops": {"sweep_models": run_config(args, 1)["ops"]["sweep_models"]}}
            (tmp / "probe.yaml").write_text(json.dumps(probe_config))
            t = time.perf_counter()
            subprocess.run([str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m",
                            "prune_dagster.definitions", "--select", "sweep_models", "--partition", "0.5|random",
                            "-c", str(tmp / "probe.yaml")], cwd=ROOT, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            probe_wall = time.perf_counter() - t
            import dagster as dg
            import mlflow

            mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
            runs = mlflow.search_runs(search_all_experiments=True, filter_string=(
                "tags.dagster_asset = 'sweep_models' and tags.dagster_partition = '0.5|random'"),
                order_by=["start_time DESC"], max_results=1)
            probe_train = float(runs["metrics.train_seconds"].iloc[0])
            probe = {"wall_seconds": round(probe_wall, 2), "train_seconds": round(probe_train, 2),
                     "overhead_seconds": round(probe_wall - probe_train, 2)}
            del dg

    table = report.curve_table(results)
    aucs = report.area_under_curves(table)
    rec = report.recommend(table)
    vs = report.versus_baseline(table)
    full = rec.full_accuracy
    at_half = table[table["fraction"] == 0.5].sort_values("mean_accuracy", ascending=False)
    best_half = at_half.iloc[0] if len(at_half) else None
    trained = {(r["strategy"], r["fraction"]) for r in results}
    train_total = w["sweep_models"].get("train_seconds", 0.0)
    mlflow_total = w["sweep_models"].get("mlflow_seconds", 0.0)
    cleaning = sum(w["step_seconds"].get(s, 0.0) for s in w["step_seconds"]
                   if s not in ("sweep_scores", "sweep_models", "pruning_report"))
    scoring = w["step_seconds"].get("sweep_scores", 0.0)
    models_step = w["step_seconds"].get("sweep_models", 0.0)
    report_step = w["step_seconds"].get("pruning_report", 0.0)
    breakdown = {
        "process start + imports": round(wall - w["run_seconds"], 2),
        "cleaning chain (steps, incl. checks' share of the run)": round(cleaning, 2),
        "sweep_scores": round(scoring, 2),
        "sweep_models: training loops (train_cnn)": round(train_total, 2),
        "sweep_models: MLflow logging": round(mlflow_total, 2),
        "sweep_models: selection, evaluation, rest": round(models_step - train_total - mlflow_total, 2),
        "pruning_report": round(report_step, 2),
        "Dagster run machinery (run − steps)": round(w["run_seconds"] - sum(w["step_seconds"].values()), 2),
    }
    out = {
        "args": {k: v for k, v in vars(args).items() if k != "worker_out"},
        "machine": {"arch": platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in load_after]},
        "wall_seconds": round(wall, 2), "breakdown_seconds": breakdown, "step_seconds": w["step_seconds"],
        "n_partitions": len(trained), "n_models": w["sweep_models"].get("n_models"),
        "n_models_trained": w["sweep_models"].get("n_models_trained"),
        "per_partition_run_probe": probe,
        "n_clean": results[0]["n_clean"] if results else None,
        "table": frame.to_dict(orient="records"),
        "auc": aucs, "recommendation": rec.as_dict(), "versus_random": vs.to_dict(orient="records"),
        "target_half": None if best_half is None else {
            "best_strategy": best_half["strategy"], "best_mean": float(best_half["mean_accuracy"]),
            "full_accuracy": full, "gap_points": round(100 * (full - float(best_half["mean_accuracy"])), 3),
            "met": bool(full - float(best_half["mean_accuracy"]) <= 0.005 + 1e-12)},
        "report_summary": summary,
    }
    suffix = ("" if args.schedule == "same_steps" else f"_{args.schedule}") + \
        ("" if args.augment == "none" else f"_{args.augment}")
    name = args.out or f"sweep_{dataset_name(args)}_s{args.seeds}{suffix}"
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(out, indent=1, default=str))
    print(f"{args.dataset}: {len(trained)} partitions × {args.seeds} seeds, {args.schedule}, {args.epochs} epochs "
          f"at full data, augment {args.augment}, torch threads {args.threads}; "
          f"load {load_before[0]:.2f} → {load_after[0]:.2f}")
    print(f"wall {wall:.1f}s")
    for k, v in breakdown.items():
        print(f"  {k:<56}{v:>8.1f}")
    if probe:
        print(f"one partition as its own run: {probe}")
    print()
    print(table_markdown(frame))
    print()
    print("recommendation:", rec.as_dict())
    print(vs.round(4).to_string(index=False))
    print("at 0.5:", out["target_half"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
