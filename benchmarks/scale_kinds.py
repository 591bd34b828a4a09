"""Tables and texts at scale on one machine: 1,000,000 table rows (10 numeric + 5 categorical columns) and
200,000 short texts through every pruning step (raw_dataset to pruned_dataset, the representation
included), with their planted defects (prune_dagster/fixtures/kinds.py); seconds per step, peak RSS,
and the same kept ids on the Dask engine (a LocalCluster of 2 workers) as in-process.

    python benchmarks/scale_kinds.py                       # table 1M and texts 200k, in-process and Dask
    python benchmarks/scale_kinds.py --kinds table --n-table 100000 --engines in-process

Each run is a child process (its peak RSS is the run's) in a temporary DAGSTER_HOME. Data is written
once to data/scale_kinds/. Prints a table and writes benchmarks/results/scale_kinds.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "scale_kinds"
RESULTS = ROOT / "benchmarks" / "results" / "scale_kinds.json"


def dataset(kind: str, n: int) -> Path:
    """data/scale_kinds/<kind>_<n>.{parquet,jsonl} with planted defects, written once."""
    from prune_dagster.fixtures.kinds import plant, table_frame, text_frame, write

    path = DATA / (f"table_{n}.parquet" if kind == "table" else f"text_{n}.jsonl")
    if not path.exists():
        frame = table_frame(n, seed=0) if kind == "table" else text_frame(n, seed=0)
        dirty, truth = plant(frame, kind, seed=0)
        write(dirty, path.with_suffix(".tmp" + path.suffix))
        os.replace(path.with_suffix(".tmp" + path.suffix), path)
        truth.to_csv(path.with_suffix(".truth.csv"), index=False)
    return path


def child(path: Path, engine: str, out: Path) -> None:
    """Run raw_dataset..pruned_dataset in this process; write timings and the kept ids' digest to `out`."""
    import dagster as dg

    from prune_dagster.core import pipeline
    from prune_dagster.definitions import defs

    keys = ["raw_dataset", *pipeline.graph()]
    job = dg.define_asset_job("scale_job", selection=keys, executor_def=dg.in_process_executor)
    resources = {**defs.resources, "engine": type(defs.resources["engine"])(address=engine)}
    start = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = dg.Definitions(assets=list(defs.assets), resources=resources, jobs=[job]).resolve_job_def(
            "scale_job").execute_in_process(instance=instance, run_config={"ops": {"raw_dataset": {"config": {
                "source": str(path)}}}})
    seconds = time.perf_counter() - start
    selection = result.output_for_node("pruned_dataset")
    steps = {r.step: {"seconds": r.seconds, "removed": r.n_in - r.n_out} for r in selection.history}
    rep = result.output_for_node("representation")
    kept = "\n".join(sorted(map(str, selection.kept_ids)))
    # this process's peak, or a Dask worker's (workers are this process's children, waited for on close)
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    out.write_text(json.dumps({"seconds": round(seconds, 1), "peak_rss_mib": round(peak / 1024), "steps": steps,
                               "representation_seconds": round(rep.seconds, 1), "n_kept": len(selection.kept_ids),
                               "kept_sha256": hashlib.sha256(kept.encode()).hexdigest(),
                               "ledger": {f"{step}/{reason}": int(n) for (step, reason), n in
                                          selection.ledger.groupby(["step", "reason"]).size().items()}}))


def run(path: Path, engine: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DAGSTER_HOME": f"{tmp}/home", "PRUNE_OUTPUT_DIR": f"{tmp}/out",
               "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        Path(f"{tmp}/home").mkdir()
        Path(f"{tmp}/home/dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        proc = subprocess.run([sys.executable, __file__, "--child", str(path), engine, f"{tmp}/result.json"],
                              env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{path.name} on {engine} failed:\n{proc.stderr[-3000:]}")
        out = json.loads(Path(f"{tmp}/result.json").read_text())
    return {**out, "data": path.name, "engine": engine}


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", default=["table", "text"])
    parser.add_argument("--n-table", type=int, default=1_000_000)
    parser.add_argument("--n-text", type=int, default=200_000)
    parser.add_argument("--engines", nargs="+", default=["in-process", "local:2"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = []
    for kind in args.kinds:
        path = dataset(kind, args.n_table if kind == "table" else args.n_text)
        for engine in args.engines:
            rows.append(run(path, engine))
            r = rows[-1]
            print(f"{kind:<6}{path.name:<24}{engine:<12}{r['seconds']:>8.1f} s{r['peak_rss_mib']:>8} MiB  "
                  f"kept {r['n_kept']}  {r['kept_sha256'][:12]}", flush=True)
    same = {k: len({r["kept_sha256"] for r in rows if r["data"].startswith(k)}) == 1 for k in args.kinds}
    print(f"same kept ids on every engine: {same}")
    command = "python benchmarks/scale_kinds.py " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()}
    args.out.write_text(json.dumps({"command": command, "machine": machine, "rows": rows,
                                    "same_kept_ids_across_engines": same}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
