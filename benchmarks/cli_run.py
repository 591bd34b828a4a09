"""One `prune-dagster run` as a user starts it, in its own Dagster instance, output folder and MLflow
store under `home`: its wall seconds, the peak RSS of its own process tree and its summary.json. Shared
by the end-to-end benchmarks (real_job.py, kinds_job.py, pays.py), so every configuration pays the same
start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = str(ROOT / ".venv" / "bin" / "prune-dagster")
# Runs the command and writes the peak RSS of the processes it waited for: its own, not the largest
# child the benchmark started so far (RUSAGE_CHILDREN of the benchmark process).
PEAK_WRAPPER = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[2:]).returncode; "
                "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
                "sys.exit(rc)")


@dataclass
class CliRun:
    seconds: float
    peak_rss_mib: int
    summary: dict


def run_cli(dataset: Path | str, sets: list[str], home: Path, log: Path | None = None) -> CliRun:
    """`prune-dagster run --dataset DATASET --set ...` with DAGSTER_HOME, PRUNE_OUTPUT_DIR and the MLflow
    store under `home` (reused when it holds an earlier run: that is how a second run reuses assets).
    Output goes to `log` (default home/run.log); a failed run stops the benchmark with its tail."""
    env = {**os.environ, "DAGSTER_HOME": str(home / "dagster"), "PRUNE_OUTPUT_DIR": str(home / "out"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db"}
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    cmd = [CLI, "run", "--dataset", str(dataset)]
    for s in sets:
        cmd += ["--set", s]
    log = log or home / "run.log"
    rss_file = home / "rss.txt"
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, str(rss_file), *cmd], env=env, stdout=out,
                              stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(sets)} failed; see {log}:\n{log.read_text()[-3000:]}")
    summary = json.loads((home / "out" / "latest" / "summary.json").read_text())
    return CliRun(seconds, round(int(rss_file.read_text()) / 1024), summary)
