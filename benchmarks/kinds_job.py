"""`prune_job` on a real table or text corpus, side by side: every step off, each step alone, the
default, and the default asked to keep 80% by EL2N or at random. Shared by benchmarks/real_table.py and real_text.py.

Each run is a fresh `prune-dagster run` process in its own temporary DAGSTER_HOME / output folder /
MLflow store, so every configuration pays the same start-up. Per seed s the split (where the data has
no split of its own), the representation and the final model use seed s; configurations are
interleaved per seed, so a drift in the machine's load hits them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from cli_run import run_cli  # benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["validated", "exact_deduplicated", "near_deduplicated", "outliers_removed", "label_noise_removed",
         "class_balanced", "features_selected", "pruned_dataset"]
READS_REPRESENTATION = {"near_deduplicated", "outliers_removed", "label_noise_removed", "pruned_dataset"}
OFF = [f"{s}.enabled=false" for s in STEPS] + ["representation.features=pixels", "trained_model.dynamic=none"]


def configs() -> dict[str, list[str]]:
    """Name -> --set values: off, default, random, and `alone:<step>` (every other step off)."""
    out = {"off": OFF, "default": [], "el2n_0.8": ["pruned_dataset.target_fraction=0.8"],
           "random_0.8": ["pruned_dataset.strategy=random", "pruned_dataset.target_fraction=0.8"]}
    for step in STEPS:
        others = [f"{s}.enabled=false" for s in STEPS if s != step]
        rep = [] if step in READS_REPRESENTATION else ["representation.features=pixels"]
        # the score step keeps everything by default on tables and texts: alone, it is asked for 0.8
        fraction = ["pruned_dataset.target_fraction=0.8"] if step == "pruned_dataset" else []
        out[f"alone:{step}"] = others + rep + fraction
    return out


def config_sets(name: str) -> list[str]:
    """The --set values of `name`: one of `configs()`, or `random_off:<fraction>` (every step off but a
    random draw keeping that fraction: random removal of as many samples as the default removes)."""
    if name.startswith("random_off:"):
        return [s for s in OFF if s != "pruned_dataset.enabled=false"] + [
            "pruned_dataset.strategy=random", f"pruned_dataset.target_fraction={name.split(':', 1)[1]}"]
    return configs()[name]


def run_once(path: Path, config: str, seed: int, extra: list[str]) -> dict:
    """One `prune-dagster run` of `config` at `seed`: accuracy, seconds, kept counts, removals by step."""
    sets = [*config_sets(config), *extra, f"representation.seed={seed}", f"trained_model.seed={seed}",
            f"raw_dataset.split_seed={seed}", "trained_model.log_model=false"]
    with tempfile.TemporaryDirectory() as tmp:
        run = run_cli(path, sets, Path(tmp))
    seconds, peak_mib, summary = run.seconds, run.peak_rss_mib, run.summary
    return {"config": config, "seed": seed, "seconds": round(seconds, 1), "peak_rss_mib": round(peak_mib),
            "test_accuracy": summary["test_accuracy"], "n_kept": summary["n_kept"],
            "n_train_split": summary["n_train_split"], "n_synthetic": summary["n_synthetic"],
            "removed_by_step": {s["step"]: s["n_in"] - s["n_out"] for s in summary["steps"]},
            "removed_by_reason": {s["step"]: s["removed_by_reason"] for s in summary["steps"]
                                  if s["removed_by_reason"]},
            "step_seconds": {s["step"]: s["seconds"] for s in summary["steps"]},
            "train_seconds": summary.get("train_seconds")}


def summarise(rows: list[dict]) -> dict:
    """Per configuration: mean accuracy (%), seconds, kept; against `off` when it ran."""
    out = {}
    for config in dict.fromkeys(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == config]
        out[config] = {"mean_test_accuracy_pct": round(100 * sum(r["test_accuracy"] for r in mine) / len(mine), 3),
                       "mean_seconds": round(sum(r["seconds"] for r in mine) / len(mine), 1),
                       "mean_n_kept": round(sum(r["n_kept"] for r in mine) / len(mine), 1), "seeds": len(mine)}
    if "off" in out:
        for s in out.values():
            s["seconds_vs_off"] = round(s["mean_seconds"] / out["off"]["mean_seconds"], 2)
            s["accuracy_vs_off_points"] = round(s["mean_test_accuracy_pct"] - out["off"]["mean_test_accuracy_pct"], 3)
    return out


def run_all(path: Path, names: list[str], seeds: list[int], extra: list[str], out: Path, command: str) -> dict:
    """Every configuration at every seed (interleaved per seed); prints a table and writes `out`."""
    load_start = os.getloadavg()
    rows = []
    for seed in seeds:
        for config in names:
            rows.append(run_once(path, config, seed, extra))
            r = rows[-1]
            print(f"{config:<30} seed {seed}: {100 * r['test_accuracy']:.2f}% test accuracy, {r['n_kept']} kept, "
                  f"{r['seconds']:.0f} s  removed {r['removed_by_step']}", flush=True)
    summary = summarise(rows)
    print(f"\n{'configuration':<30}{'accuracy %':>11}{'vs off':>8}{'kept':>8}{'seconds':>9}{'x off':>7}")
    for config, s in summary.items():
        print(f"{config:<30}{s['mean_test_accuracy_pct']:>11.2f}{s.get('accuracy_vs_off_points', 0):>+8.2f}"
              f"{s['mean_n_kept']:>8.0f}{s['mean_seconds']:>9.1f}{s.get('seconds_vs_off', 1):>7.2f}")
    result = {"command": command, "data": str(path),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_start": load_start,
                          "load_avg_end": os.getloadavg()}, "rows": rows, "summary": summary}
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result


def main(kind: str, fetch: Callable[[], Path], extra: list[str], doc: str, argv: list[str] | None = None) -> int:
    """The command line of benchmarks/real_table.py and real_text.py: `--part job` runs configurations
    here on the file `fetch` gives, `--part defects` the planted-defect comparison (kinds_defects.py)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["job", "defects"], default="job")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=list(configs()))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    command = f"python benchmarks/real_{kind}.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = args.out or ROOT / "benchmarks" / "results" / f"real_{kind}_{args.part}.json"
    if args.part == "job":
        run_all(fetch(), args.configs, args.seeds, extra, out, command)
    else:
        import kinds_defects  # noqa: PLC0415

        kinds_defects.run_all(kind, args.seeds, out, command)
    return 0
