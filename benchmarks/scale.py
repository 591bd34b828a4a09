"""Benchmark: the pruning graph at 10k, 100k and 1M samples: seconds, peak memory and detection per step.

    python benchmarks/scale.py [--sizes 10000 100000 1000000] [--engine ADDRESS] [--repeats 1]
                               [--seed 0] [--out benchmarks/results/scale.json] [--distances]

For each n it
1. generates a digits-like dataset of n samples with planted defects (`prune_dagster.fixtures.synthetic`:
   1% exact and 1% near duplicates, 10% symmetric label flips, 1% outliers, a clean 20% test split),
   cached under data/scale/<n>-<seed>/;
2. in a fresh subprocess per n (and per repeat) materializes the real graph from `raw_dataset` to
   `pruned_dataset` (not the CNN training): the assets, their asset checks and the resources of
   `prune_dagster.definitions`, with a temporary DAGSTER_HOME, PRUNE_OUTPUT_DIR and MLflow store,
   raw_dataset's `source` = the folder, every other setting at its default, and
   PRUNE_ENGINE_ADDRESS = --engine ("" = in-process, e.g. "local:2" = a local two-worker cluster);
3. reports per step: `wall_s`, the step's wall time from the Dagster event log (STEP_START to
   STEP_SUCCESS/FAILURE, so it includes loading inputs and storing the output), `asset_s`, the
   asset's own `seconds` metadata (the pure step), the peak memory while the step ran: the RSS of the
   subprocess plus its children (Dask workers), sampled every 20 ms from this process with psutil
   (also RSS minus shared/file-backed pages, `anon`: pages of a memory-mapped dataset count in RSS
   but are page cache), and for the cleaning steps precision / recall / F1 against truth.csv, each
   step scored on its own input (what the earlier steps left) with the definitions of
   benchmarks/defects.py (duplicates scored by set: a set of m members present expects m - 1 removals);
4. the growth exponent of each step: the log-log slope of wall seconds against n between consecutive
   sizes, and between the first and the last size.
With --distances it also measures, before the run, how far planted near duplicates and clean
samples lie from their nearest neighbour in near_deduplicated's own space, in units of its radius'
unit (the median nearest-neighbour distance the step measures).

A step that fails, or a subprocess that dies or runs past --timeout, is reported as such and the table
goes on. Timings on a shared machine are under contention: repeat (--repeats) and take the medians.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from prune_dagster.core import pipeline

ROOT = Path(__file__).resolve().parents[1]
# The pipeline's own order (a hard-coded list went stale when a step was added).
GRAPH = ("raw_dataset", *pipeline.graph())
# Cleaning step -> the planted defect it is scored against.
CLEANING = {"exact_deduplicated": "exact_duplicate", "near_deduplicated": "near_duplicate",
            "outliers_removed": "outlier", "label_noise_removed": "label_flip"}
SET_DEFECTS = ("exact_duplicate", "near_duplicate")
SAMPLE_INTERVAL = 0.02
CHECKS = "asset checks"  # the row that sums the asset-check steps


# ------------------------------------------------------------------------------------------------
# The child: one graph run in a fresh process


def step_events(instance, run_id: str) -> dict[str, dict]:
    """step key -> status, start/end (epoch seconds), error, and the asset's metadata values."""
    steps: dict[str, dict] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        rec = steps.setdefault(entry.step_key, {"status": "not_started"})
        kind = event.event_type_value
        if kind == "STEP_START":
            rec.update(start=entry.timestamp, status="running")
        elif kind == "STEP_SUCCESS":
            rec.update(end=entry.timestamp, status="success")
        elif kind == "STEP_FAILURE":
            rec.update(end=entry.timestamp, status="failure",
                       error=_error_text(getattr(event.event_specific_data, "error", None)))
        elif kind == "STEP_SKIPPED":
            rec["status"] = "skipped"
        elif kind == "ASSET_MATERIALIZATION":
            metadata = event.event_specific_data.materialization.metadata
            rec["metadata"] = {k: v.value for k, v in metadata.items()
                               if isinstance(v.value, int | float | dict | list) and not isinstance(v.value, bool)}
    return steps


def _error_text(error) -> str:
    """The messages of a Dagster error and its causes, innermost (the real one) first."""
    messages, seen = [], 0
    while error is not None and seen < 10:
        messages.append((getattr(error, "message", None) or str(error)).strip())
        error, seen = getattr(error, "cause", None) or getattr(error, "context", None), seen + 1
    return " <- ".join(reversed(messages))[:2000]


def detection(folder: Path, selection) -> dict[str, dict]:
    """Precision / recall / F1 of each cleaning step in `selection.history` on its own input."""
    from defects import duplicate_sets, kind_recall, score_ids, score_sets  # benchmarks/defects.py

    from prune_dagster.fixtures.synthetic import read_truth

    ids = np.load(folder / "ids.npy")
    split = np.load(folder / "split.npy")
    train = set(ids[split == "train"].tolist())
    truth = read_truth(folder)
    not_clean = set(truth.id) | set(truth.source_id[truth.defect.isin(SET_DEFECTS)])
    removed_by = {str(s): set(g["id"]) for s, g in selection.ledger.groupby("step")}
    gone: set[str] = set()
    out: dict[str, dict] = {}
    for record in selection.history:
        step = record.step
        removed = removed_by.get(step, set())
        defect = CLEANING.get(step)
        if defect is not None:
            present = train - gone
            clean = present - not_clean
            if defect in SET_DEFECTS:
                score = score_sets(removed, duplicate_sets(truth, defect, present), clean)
            else:
                score = score_ids(removed, set(truth.id[truth.defect == defect]) & present, clean)
            score["recall_by_kind"] = kind_recall(removed, truth, defect, present, defect in SET_DEFECTS)
            score["defect"] = defect
            out[step] = score
        gone |= removed
    return out


def run_child(folder: Path, result_path: Path) -> int:
    started = time.time()
    import dagster as dg

    from prune_dagster.definitions import defs

    imported = time.time()
    by_key = {a.key.to_user_string(): a for a in defs.assets or ()}
    assets = [by_key[key] for key in GRAPH]
    checks = [c for c in defs.asset_checks or ()
              if all(k.asset_key.to_user_string() in GRAPH for k in c.check_keys)]
    instance = dg.DagsterInstance.get()
    result = dg.materialize(
        [*assets, *checks], instance=instance, resources=dict(defs.resources or {}), raise_on_error=False,
        run_config={"ops": {"raw_dataset": {"config": {"source": str(folder)}}},
                    "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    finished = time.time()
    steps = step_events(instance, result.run_id)
    out: dict = {"run_id": result.run_id, "success": result.success, "started": started,
                 "import_s": round(imported - started, 3), "run_s": round(finished - imported, 3), "steps": steps}
    # Score what the last successful pruning step says (its ledger holds every earlier step's rows).
    done = [s for s in GRAPH[1:] if steps.get(s, {}).get("status") == "success"]
    if done:
        try:
            selection = result.output_for_node(done[-1])
            out["detection"] = detection(folder, selection)
            out["graph"] = {"scored_from": done[-1], "n_train": int(selection.n_train_split),
                            "n_kept": int(len(selection.kept_ids))}
        except Exception as exc:  # the timings are still worth reporting
            out["detection_error"] = f"{type(exc).__name__}: {exc}"[:2000]
    import resource

    out["ru_maxrss_self_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, default=str))
    tmp.replace(result_path)
    return 0


# ------------------------------------------------------------------------------------------------
# The parent: memory sampling, one subprocess per run, aggregation


class MemorySampler(threading.Thread):
    """RSS (and RSS minus shared pages) of a process plus its children, every `interval` seconds."""

    def __init__(self, pid: int, interval: float = SAMPLE_INTERVAL) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int, int, int]] = []  # (epoch s, rss, anon, processes)
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        procs, refreshed = [root], 0.0
        while not self._halt.is_set():
            now = time.time()
            if now - refreshed > 1.0:  # walking the process table costs far more than reading memory
                try:
                    procs = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    return
                refreshed = now
            rss = anon = alive = 0
            for p in procs:
                try:
                    info = p.memory_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                rss += info.rss
                anon += info.rss - getattr(info, "shared", 0)
                alive += 1
            if alive:
                self.samples.append((now, rss, anon, alive))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def _peak(samples: list[tuple], start: float, end: float) -> tuple[float | None, float | None, int]:
    """(peak RSS MiB, peak anon MiB, most processes) of the samples in [start, end] (widened by one
    interval, so a step shorter than the interval still gets its nearest sample)."""
    inside = [s for s in samples if start - SAMPLE_INTERVAL <= s[0] <= end + SAMPLE_INTERVAL]
    if not inside:
        return None, None, 0
    return (round(max(s[1] for s in inside) / 2**20, 1), round(max(s[2] for s in inside) / 2**20, 1),
            max(s[3] for s in inside))


def _salvage(dagster_home: Path, folder: Path) -> dict:
    """For a child that died before reporting: the step events of the (only) run in its Dagster
    home and the detection of the last pruning step that finished, from the value the project's IO
    manager stored for it (storage/<asset>/<run_id>.pkl, written by that child)."""
    out: dict = {"success": False}
    try:
        import dagster as dg

        instance = dg.DagsterInstance.from_config(str(dagster_home))
        runs = instance.get_runs(limit=1)
        if not runs:
            return {**out, "steps": {}}
        run_id = runs[0].run_id
        out.update(run_id=run_id, steps=step_events(instance, run_id))
    except Exception as exc:
        return {**out, "steps": {}, "detection_error": f"event log unreadable: {type(exc).__name__}: {exc}"}
    done = [s for s in GRAPH[1:] if out["steps"].get(s, {}).get("status") == "success"]
    stored = dagster_home / "storage" / done[-1] / f"{run_id}.pkl" if done else None
    if stored is not None and stored.exists():
        try:
            import pickle

            with open(stored, "rb") as fh:
                selection = pickle.load(fh)  # our own IO manager's file from this run, nothing else
            out["detection"] = detection(folder, selection)
            out["graph"] = {"scored_from": done[-1], "n_train": int(selection.n_train_split),
                            "n_kept": int(len(selection.kept_ids)), "salvaged": True}
        except Exception as exc:
            out["detection_error"] = f"{type(exc).__name__}: {exc}"[:2000]
    return out


def run_once(folder: Path, engine: str, timeout: float) -> dict:
    """One graph run in a fresh subprocess, with memory sampled from here."""
    home = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    try:
        dagster_home = home / "dagster_home"
        dagster_home.mkdir()
        (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "PRUNE_OUTPUT_DIR": str(home / "outputs"),
               "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}", "PRUNE_ENGINE_ADDRESS": engine}
        env.pop("PRUNE_DATASET", None)
        result_path = home / "result.json"
        log_path = home / "child.log"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(folder), "--result", str(result_path)]
        start = time.time()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # its own process group: a timeout kills its workers too
            sampler = MemorySampler(proc.pid)
            sampler.start()
            timed_out = False
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
            sampler.stop()
        end = time.time()
        run: dict = {"rc": rc, "timed_out": timed_out, "child_wall_s": round(end - start, 2)}
        if result_path.exists():
            run.update(json.loads(result_path.read_text()))
        else:
            run.update(_salvage(dagster_home, folder))
        if rc != 0 or not run.get("success"):
            run["log_tail"] = log_path.read_text(errors="replace")[-3000:]
        samples = sampler.samples
        run["peak_rss_mib"] = round(max((s[1] for s in samples), default=0) / 2**20, 1)
        run["peak_anon_mib"] = round(max((s[2] for s in samples), default=0) / 2**20, 1)
        run["max_processes"] = max((s[3] for s in samples), default=0)
        run["n_samples"] = len(samples)
        first = min((r["start"] for r in run["steps"].values() if "start" in r), default=None)
        if first is not None:
            run["rss_before_run_mib"] = round(max((s[1] for s in samples if s[0] < first), default=0) / 2**20, 1)
        for rec in run["steps"].values():
            if rec.get("status") == "running":  # the step the child was in when it ended
                rec["status"] = "timeout" if timed_out else "died"
            if "start" in rec:
                rec["wall_s"] = round(rec.get("end", end) - rec["start"], 3)
                rec["peak_rss_mib"], rec["peak_anon_mib"], rec["processes"] = _peak(samples, rec["start"],
                                                                                    rec.get("end", end))
        return run
    finally:
        shutil.rmtree(home, ignore_errors=True)


def step_rows(runs: list[dict]) -> list[dict]:
    """One row per step of GRAPH (+ the asset checks summed): medians of times over the repeats,
    the largest peak, the detection of the first run that has one."""
    rows = []
    for step in (*GRAPH, CHECKS):
        recs = []
        for run in runs:
            steps = run.get("steps", {})
            if step == CHECKS:
                checks = [r for k, r in steps.items() if k not in GRAPH and "wall_s" in r]
                if not checks:
                    continue
                recs.append({"status": "success" if all(r["status"] == "success" for r in checks) else "failure",
                             "wall_s": sum(r["wall_s"] for r in checks),
                             "peak_rss_mib": max(r["peak_rss_mib"] or 0 for r in checks),
                             "peak_anon_mib": max(r["peak_anon_mib"] or 0 for r in checks),
                             "n_checks": len(checks)})
            elif step in steps:
                recs.append(steps[step])
        row: dict = {"step": step}
        if not recs:
            row["status"] = "not_run"
            rows.append(row)
            continue
        statuses = [r.get("status") for r in recs]
        row["status"] = statuses[0] if len(set(statuses)) == 1 else "mixed:" + ",".join(statuses)
        walls = [r["wall_s"] for r in recs if "wall_s" in r]
        asset = [r["metadata"]["seconds"] for r in recs if "seconds" in r.get("metadata", {})]
        row["wall_s"] = statistics.median(walls) if walls else None
        row["wall_s_all"] = walls
        row["asset_s"] = statistics.median(asset) if asset else None
        row["peak_rss_mib"] = max((r.get("peak_rss_mib") or 0 for r in recs), default=None)
        row["peak_anon_mib"] = max((r.get("peak_anon_mib") or 0 for r in recs), default=None)
        row["processes"] = max((r.get("processes") or 0 for r in recs), default=0)
        meta = next((r["metadata"] for r in recs if "metadata" in r), {})
        for key in ("n_in", "n_out", "removed_by_reason"):
            if key in meta:
                row[key] = meta[key]
        errors = [r["error"] for r in recs if r.get("error")]
        if errors:
            row["error"] = errors[0]
        det = next((run["detection"][step] for run in runs if step in run.get("detection", {})), None)
        if det is not None:
            row["detection"] = det
        rows.append(row)
    return rows


def growth(results: list[dict], key: str = "wall_s") -> dict[str, dict[str, float | None]]:
    """step -> {"n1->n2": log-log slope of `key` seconds}, consecutive sizes and first->last."""
    sizes = [r for r in results if r.get("steps")]
    pairs = [(a, b) for a, b in zip(sizes, sizes[1:], strict=False)]
    if len(sizes) > 2:
        pairs.append((sizes[0], sizes[-1]))
    out: dict[str, dict[str, float | None]] = {}
    for step in (*GRAPH, CHECKS, "total") if key == "wall_s" else GRAPH:
        out[step] = {}
        for a, b in pairs:
            ta, tb = _seconds(a, step, key), _seconds(b, step, key)
            ok = ta and tb and ta > 0 and tb > 0
            out[step][f"{a['n']}->{b['n']}"] = round(math.log(tb / ta) / math.log(b["n"] / a["n"]), 3) if ok else None
    return out


def _seconds(result: dict, step: str, key: str) -> float | None:
    if step == "total":
        return result.get("total", {}).get("steps_wall_s")
    row = next((r for r in result["steps"] if r["step"] == step), None)
    return row.get(key) if row and row.get("status") == "success" else None


# ------------------------------------------------------------------------------------------------
# Near-duplicate distances in the step's own space


def near_distances(folder: Path, threshold: float = 0.3, max_queries: int = 10_000, seed: int = 0) -> dict:
    """Distances in near_deduplicated's space (its views and its radius unit), in units of that
    unit: each clean sample's nearest other sample (any view of it to view 0 of the other; a
    seeded sample of up to `max_queries` clean train rows that are not the source of a planted
    copy) and each planted near duplicate's distance to its source (both directions). The step's
    input is approximated as the train split without the exact-duplicate copies."""
    from sklearn.neighbors import NearestNeighbors

    from prune_dagster.core.steps.near_dup import median_nn_distance, near_duplicate_views
    from prune_dagster.fixtures.synthetic import read_truth

    ids = np.load(folder / "ids.npy")
    split = np.load(folder / "split.npy")
    truth = read_truth(folder)
    keep = (split == "train") & ~np.char.startswith(ids, "dup/")
    pos = np.flatnonzero(keep)
    images = np.load(folder / "images.npy", mmap_mode="r")
    views = near_duplicate_views(images[pos])
    unit, nn_rows = median_nn_distance(views[0])
    row_of = {sid: i for i, sid in enumerate(ids[pos].tolist())}

    sources = set(truth.source_id[truth.source_id != ""])
    clean = np.array([i for i, sid in enumerate(ids[pos].tolist()) if sid.startswith("s") and sid not in sources])
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(clean, size=min(max_queries, len(clean)), replace=False))
    nn = NearestNeighbors(n_neighbors=2, algorithm="brute").fit(views[0])
    best = np.full(len(queries), np.inf)
    for view in views:
        dist, idx = nn.kneighbors(view[queries])
        other = np.where(idx[:, 0] == queries, dist[:, 1], dist[:, 0])
        best = np.minimum(best, other)
    clean_units = best / unit

    near = truth[truth.defect == "near_duplicate"]
    planted: dict[str, list[float]] = {}
    for sid, src, kind in zip(near.id, near.source_id, near.kind, strict=True):
        i, j = row_of[sid], row_of[src]
        d = min(np.linalg.norm(views[:, i] - views[0, j], axis=1).min(),
                np.linalg.norm(views[:, j] - views[0, i], axis=1).min())
        planted.setdefault(kind, []).append(float(d / unit))

    def q(values: np.ndarray, probs: tuple[float, ...]) -> dict[str, float]:
        return {f"q{100 * p:g}": round(float(np.quantile(values, p)), 4) for p in probs}

    all_planted = np.concatenate([np.asarray(v) for v in planted.values()]) if planted else np.zeros(0)
    return {
        "n_step_input": int(len(pos)), "unit_median_nn": round(unit, 5), "unit_rows": nn_rows,
        "threshold": threshold, "n_clean_queries": int(len(queries)),
        "clean_nearest": {**q(clean_units, (0.0, 0.001, 0.01, 0.05, 0.5)),
                          "frac_within_threshold": float((clean_units <= threshold).mean()),
                          "frac_within_1.5x_threshold": float((clean_units <= 1.5 * threshold).mean())},
        "planted_to_source": {kind: {**q(np.asarray(v), (0.5, 0.9, 0.99, 1.0)), "n": len(v),
                                     "frac_within_threshold": float((np.asarray(v) <= threshold).mean())}
                              for kind, v in sorted(planted.items())},
        "planted_all_within_threshold": float((all_planted <= threshold).mean()) if len(all_planted) else None,
    }


# ------------------------------------------------------------------------------------------------
# Machine, table, main


def machine_info() -> dict:
    import psutil

    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu_model": model or platform.processor(), "logical_cores": os.cpu_count(),
            "physical_cores": psutil.cpu_count(logical=False),
            "ram_gib": round(psutil.virtual_memory().total / 2**30, 1), "platform": platform.platform(),
            "python": platform.python_version(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


def _fmt(value, nd: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{nd}f}" if isinstance(value, float) else str(value)


def table(results: list[dict], grow: dict) -> list[str]:
    head = (f"{'n':>9} {'step':20} {'status':8} {'wall s':>8} {'asset s':>8} {'RSS MiB':>8} {'anon MiB':>8} "
            f"{'kept':>9} {'P':>6} {'R':>6} {'F1':>6}")
    lines = [head, "-" * len(head)]
    for res in results:
        for row in res.get("steps", []):
            det = row.get("detection", {})
            kept = f"{row['n_out']}" if "n_out" in row else ""
            lines.append(f"{res['n']:>9} {row['step']:20} {row['status'][:8]:8} {_fmt(row.get('wall_s')):>8} "
                         f"{_fmt(row.get('asset_s')):>8} {_fmt(row.get('peak_rss_mib'), 0):>8} "
                         f"{_fmt(row.get('peak_anon_mib'), 0):>8} {kept:>9} {_fmt(det.get('precision'), 3):>6} "
                         f"{_fmt(det.get('recall'), 3):>6} {_fmt(det.get('f1'), 3):>6}")
            if row.get("error"):
                lines.append(f"{'':9}   error: {row['error'].splitlines()[0][:150]}")
        tot = res.get("total", {})
        lines.append(f"{res['n']:>9} {'total (steps)':20} {'':8} {_fmt(tot.get('steps_wall_s')):>8} {'':8} "
                     f"{_fmt(tot.get('peak_rss_mib'), 0):>8} {_fmt(tot.get('peak_anon_mib'), 0):>8}   "
                     f"child wall {_fmt(tot.get('child_wall_s'))} s, generate {_fmt(res.get('generate_s'))} s"
                     f"{' (cached)' if res.get('reused') else ''}")
        for problem in res.get("problems", []):
            lines.append(f"{'':9}   PROBLEM: {problem}")
        lines.append("")
    pairs = sorted({p for g in grow.values() for p in g}, key=lambda p: (int(p.split("->")[0]), int(p.split("->")[1])))
    if pairs:
        title = "growth exponent (log-log slope of wall seconds vs n)"
        lines.append(f"{title:55}" + "".join(f"{p:>18}" for p in pairs))
        for step, g in grow.items():
            lines.append(f"{step:55}" + "".join(f"{_fmt(g.get(p), 2):>18}" for p in pairs))
    return lines


def summarise(n: int, runs: list[dict]) -> dict:
    rows = step_rows(runs)
    walls = [r["wall_s"] for r in rows if r["step"] != CHECKS and r.get("wall_s") is not None]
    checks = next((r.get("wall_s") or 0 for r in rows if r["step"] == CHECKS), 0)
    problems = []
    for run in runs:
        if run.get("timed_out"):
            problems.append(f"timed out after {run['child_wall_s']} s")
        elif run.get("rc"):
            problems.append(f"subprocess exited with {run['rc']}: {run.get('log_tail', '')[-300:]!r}")
        if run.get("detection_error"):
            problems.append(f"detection not scored: {run['detection_error']}")
    return {"n": n, "steps": rows, "problems": problems, "total": {
        "steps_wall_s": round(sum(walls) + checks, 3) if walls else None,
        "child_wall_s": statistics.median([r["child_wall_s"] for r in runs]),
        "peak_rss_mib": max(r.get("peak_rss_mib", 0) for r in runs),
        "peak_anon_mib": max(r.get("peak_anon_mib", 0) for r in runs),
        "success": all(r.get("success") for r in runs)}}


def _cached(folder: Path, n: int, seed: int, config: dict) -> bool:
    try:
        made = json.loads((folder / "synthetic.json").read_text())
    except (OSError, ValueError):
        return False
    return (made.get("n"), made.get("seed"), made.get("config")) == (n, seed, config)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--engine", default="", help="PRUNE_ENGINE_ADDRESS for the graph ('' = in-process)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    ap.add_argument("--repeats", type=int, default=1, help="fresh runs per size; times are medians")
    ap.add_argument("--seed", type=int, default=0, help="the generator's seed")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data" / "scale", help="cache of generated datasets")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per graph run before it is killed")
    ap.add_argument("--append", action="store_true",
                    help="keep the other sizes' results already in --out (same seed and engine) and add these")
    ap.add_argument("--distances", action="store_true",
                    help="also measure near-duplicate and clean nearest-neighbour distances in the step's space")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return run_child(args.child, args.result)

    from dataclasses import asdict

    from prune_dagster.fixtures.synthetic import ScaleConfig, make_scale_dataset

    report: dict = {"machine": machine_info(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
                    "config": {"sizes": args.sizes, "engine": args.engine, "repeats": args.repeats, "seed": args.seed,
                               "timeout_s": args.timeout, "sample_interval_s": SAMPLE_INTERVAL,
                               "generator": asdict(ScaleConfig())},
                    "results": []}
    if args.append and args.out.exists():
        before = json.loads(args.out.read_text())
        same = {k: before.get("config", {}).get(k) for k in ("seed", "engine", "generator")} == \
            {k: report["config"][k] for k in ("seed", "engine", "generator")}
        if not same:
            sys.exit(f"--append: {args.out} was made with another seed, engine or generator; use another --out")
        report["results"] = [r for r in before.get("results", []) if r["n"] not in args.sizes]
        report["earlier_commands"] = [*before.get("earlier_commands", []), before.get("command")]
    started = time.perf_counter()
    for n in sorted(args.sizes):
        folder = args.data_dir / f"{n}-{args.seed}"
        load = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews the times
        t0 = time.perf_counter()
        reused = _cached(folder, n, args.seed, asdict(ScaleConfig()))
        make_scale_dataset(n, folder, args.seed)  # reuses a complete folder made with the same settings
        gen_s = round(time.perf_counter() - t0, 2)
        counts = json.loads((folder / "synthetic.json").read_text())["counts"]
        print(f"[{time.perf_counter() - started:6.0f}s] n={n}: dataset {folder} "
              f"({'cached' if reused else f'generated in {gen_s} s'})", flush=True)
        distances = None
        if args.distances:
            t0 = time.perf_counter()
            distances = near_distances(folder)
            distances["seconds"] = round(time.perf_counter() - t0, 1)
            c, p = distances["clean_nearest"], distances["planted_to_source"]
            print(f"  distances (x median NN {distances['unit_median_nn']}): clean nearest q0 {c['q0']} q0.1 "
                  f"{c['q0.1']} q1 {c['q1']} q50 {c['q50']}, within {distances['threshold']}: "
                  f"{c['frac_within_threshold']:.4%}; planted max "
                  + ", ".join(f"{k} {v['q100']}" for k, v in p.items()), flush=True)
        runs = []
        for r in range(args.repeats):
            run = run_once(folder.resolve(), args.engine, args.timeout)
            runs.append(run)
            status = "ok" if run.get("success") else \
                f"FAILED (rc {run['rc']}{', timed out' if run['timed_out'] else ''})"
            print(f"[{time.perf_counter() - started:6.0f}s] n={n} run {r + 1}/{args.repeats}: {status}, "
                  f"child {run['child_wall_s']} s, peak RSS {run['peak_rss_mib']:.0f} MiB", flush=True)
        res = {**summarise(n, runs), "folder": str(folder), "generate_s": gen_s, "reused": reused,
               "load_avg_at_start": load, "counts": counts, "runs": runs}
        if distances is not None:
            res["near_distances"] = distances
        report["results"] = sorted([*report["results"], res], key=lambda r: r["n"])
        report["growth"] = growth(report["results"])
        report["growth_asset_s"] = growth(report["results"], "asset_s")  # the pure step, without IO
        report["table"] = table(report["results"], report["growth"])
        args.out.parent.mkdir(parents=True, exist_ok=True)  # written after every size: a later crash keeps these
        args.out.write_text(json.dumps(report, indent=1, default=str))
    print()
    print("\n".join(report["table"]))
    print(f"wrote {args.out} ({time.perf_counter() - started:.0f} s)")
    return 0 if all(r["total"]["success"] for r in report["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
