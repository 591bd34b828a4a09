"""Where the main job's time goes: imports, Dagster overhead per executor, and the steps themselves.

    python benchmarks/executor_overhead.py [--runs 3]

Prints a table and writes benchmarks/results/executor_overhead.json. Each figure is the median over
--runs fresh processes (a new Dagster home, output folder and MLflow store per run).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def fresh_env(tmp: Path) -> dict[str, str]:
    (tmp / "dh").mkdir(parents=True, exist_ok=True)
    return {**os.environ, "DAGSTER_HOME": str(tmp / "dh"), "PRUNE_OUTPUT_DIR": str(tmp / "out"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "PRUNE_DATASET": "digits"}


def step_seconds(out: Path) -> dict[str, float]:
    summary = json.loads(next(out.glob("runs/*/summary.json")).read_text())
    steps = {s["step"]: s["seconds"] for s in summary["steps"]}
    steps["trained_model (training loop)"] = summary["train_seconds"]
    return steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-multiprocess", action="store_true")
    args = parser.parse_args()
    py = sys.executable
    cases = {
        "python -c 'import torch'": [py, "-c", "import torch"],
        "import prune_dagster.definitions": [py, "-c", "import prune_dagster.definitions"],
        "prune_job, in-process executor (prune-dagster run)": [str(BIN / "prune-dagster"), "run"],
    }
    if not args.skip_multiprocess:
        cases["prune_job, multiprocess executor (dagster job execute)"] = [
            str(BIN / "dagster"), "job", "execute", "-f", "benchmarks/executor_defs.py", "-j", "prune_job_multiprocess"]
    results: dict[str, dict] = {}
    steps: list[dict[str, float]] = []
    for name, cmd in cases.items():
        times = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                env = fresh_env(Path(tmp))
                times.append(timed(cmd, env))
                if "in-process" in name:
                    steps.append(step_seconds(Path(tmp) / "out"))
        results[name] = {"median_s": round(statistics.median(times), 2), "runs_s": [round(t, 2) for t in times]}
    step_medians = {k: round(statistics.median(s[k] for s in steps), 2) for k in steps[0]} if steps else {}
    width = max(map(len, results)) + 2
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"{'what':<{width}}{'median s':>10}  runs")
    for name, r in results.items():
        print(f"{name:<{width}}{r['median_s']:>10}  {r['runs_s']}")
    if step_medians:
        total = sum(step_medians.values())
        print(f"\nin-process run, step compute (median): {total:.1f}s in all")
        for k, v in step_medians.items():
            print(f"  {k:<32}{v:>8}")
    out = ROOT / "benchmarks" / "results" / "executor_overhead.json"
    out.write_text(json.dumps({"machine": {"arch": platform.machine(), "cores": os.cpu_count()},
                               "results": results, "step_seconds_median": step_medians}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
