"""Does pruning pay? The whole `prune_job` per configuration, end to end, on real MNIST and a 60,000-image
real-derived set: accuracy, seconds, sample passes and peak RSS, side by side in one run.

Configurations (each a fresh `prune-dagster run` process in its own temporary DAGSTER_HOME, output folder
and MLflow store, so all pay the same start-up; per seed s the split, the representation and the final
CNN use seed s):

- `off`: every step off, no representation, full training (the reference);
- `default`: the defaults as shipped;
- `recommended`: the cheapest setting within 0.2 points of `off` that benchmarks/cheaper.py measured
  (`RECOMMENDED` below: every step off, InfoBatch in the final training);
- `second`: in the default run's DAGSTER_HOME, the same job again with only a `trained_model` setting
  changed (`SECOND`): everything before the final training is reused, so its time is compared with the
  final training's own seconds.

    python benchmarks/pays.py                                   # real MNIST, seeds 0 1 2
    python benchmarks/pays.py --n 60000 --seeds 0 --out benchmarks/results/pays_60k.json

Prints a table and writes benchmarks/results/pays.json (the machine and its load included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_job  # noqa: E402
from cli_run import run_cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "pays.json"
# The cheapest setting within 0.2 points of full training that benchmarks/cheaper.py measured: no cleaning,
# no representation, InfoBatch at prune_ratio 0.7 (on clean data the cleaning steps only cost time).
RECOMMENDED = [s for s in real_job.CONFIGS["off"] if s != "trained_model.dynamic=none"] + [
    "trained_model.dynamic=infobatch", "trained_model.prune_ratio=0.7"]
SECOND = ["trained_model.batch_size=128"]  # a training setting a user changes; every earlier asset is reused
CONFIGS = {"off": [*real_job.CONFIGS["off"]], "default": [], "recommended": RECOMMENDED}


def row(config: str, seed: int, seconds: float, rss: int, summary: dict) -> dict:
    compute = summary["compute"]
    assets = compute["assets"]
    return {"config": config, "seed": seed, "seconds": round(seconds, 1), "peak_rss_mib": rss,
            "test_accuracy_pct": round(100 * summary["test_accuracy"], 2), "n_kept": summary["n_kept"],
            "compute_seconds": compute["compute_seconds"], "run_seconds": compute["run_seconds"],
            "sample_passes": compute["compute_sample_passes"],
            "representation_seconds": assets.get("representation", {}).get("seconds", 0.0),
            "final_training_seconds": assets.get("trained_model", {}).get("seconds", 0.0),
            "final_sample_pass_fraction": summary.get("sample_pass_fraction"),
            "reused": sorted(a for a, v in assets.items() if "reused_from_run" in v)}


def one_seed(npz: Path, seed: int, configs: list[str], work: Path) -> list[dict]:
    rows = []
    seeded = [f"raw_dataset.split_seed={seed}", f"representation.seed={seed}", f"trained_model.seed={seed}"]
    for config in configs:
        home = work / f"{config}-{seed}"
        run = run_cli(npz, [*CONFIGS[config], *seeded], home, work / f"{config}-{seed}.log")
        rows.append(row(config, seed, run.seconds, run.peak_rss_mib, run.summary))
        print(json.dumps(rows[-1]), flush=True)
        if config == "default":  # the second run: same home, only a training setting changed
            run = run_cli(npz, [*seeded, *SECOND], home, work / f"second-{seed}.log")
            rows.append(row("second", seed, run.seconds, run.peak_rss_mib, run.summary))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def summarise(rows: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for config in dict.fromkeys(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == config]
        mean = {k: round(sum(r[k] for r in mine) / len(mine), 2) for k in
                ("test_accuracy_pct", "seconds", "sample_passes", "peak_rss_mib", "final_training_seconds",
                 "representation_seconds", "run_seconds")}
        out[config] = {**mean, "runs": len(mine)}
    if "off" in out:
        for s in out.values():
            s["seconds_vs_off"] = round(s["seconds"] / out["off"]["seconds"], 3)
            s["accuracy_vs_off_points"] = round(s["test_accuracy_pct"] - out["off"]["test_accuracy_pct"], 2)
    if "second" in out:  # the second run against its own final training
        s = out["second"]
        s["seconds_vs_its_final_training"] = round(s["seconds"] / s["final_training_seconds"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--n", type=int, default=0, help="above 10,000: that many real-derived digits")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    npz = real_job.scaled_npz(args.n) if args.n > 10_000 else real_job.mnist_npz()
    load_start = os.getloadavg()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:  # configurations interleaved per seed: load drifts hit all alike
            rows += one_seed(npz, seed, args.configs, Path(tmp))
    summary = summarise(rows)
    print(f"\n{'configuration':<13}{'accuracy %':>11}{'vs off':>8}{'seconds':>9}{'x off':>7}{'passes':>10}"
          f"{'final s':>9}{'peak MiB':>10}")
    for config, s in summary.items():
        print(f"{config:<13}{s['test_accuracy_pct']:>11.2f}{s.get('accuracy_vs_off_points', 0):>+8.2f}"
              f"{s['seconds']:>9.1f}{s.get('seconds_vs_off', 1):>7.2f}{s['sample_passes']:>10.0f}"
              f"{s['final_training_seconds']:>9.1f}{s['peak_rss_mib']:>10.0f}")
    if "second" in summary:
        print(f"second run / its own final training: {summary['second']['seconds_vs_its_final_training']:.2f}x")
    args.out.write_text(json.dumps({
        "command": "python benchmarks/pays.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_start": load_start,
                    "load_avg_end": os.getloadavg()},
        "recommended": RECOMMENDED, "second_run_change": SECOND, "rows": rows, "summary": summary}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
