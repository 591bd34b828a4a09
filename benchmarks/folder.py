"""A folder of N PNGs (default 5,000, made from the bundled digits) loaded and pruned end to end.

    python benchmarks/folder.py [--n 5000] [--runs 1]

Runs `prune-dagster run` on the folder in a fresh Dagster home and reports wall time and the peak
resident memory of that process. Writes benchmarks/results/folder.json.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from prune_dagster.core.data.export import write_png_folder
from prune_dagster.core.data.sources import load_digits

ROOT = Path(__file__).resolve().parents[1]


def make_folder(root: Path, n: int, seed: int = 0) -> None:
    """Digits, each copy shifted by up to one pixel and with a little noise, so copies differ."""
    d = load_digits()
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(d), n)
    images = d.images[pick].copy()
    for i in range(n):
        images[i] = np.roll(images[i], tuple(rng.integers(-1, 2, 2)), axis=(0, 1))
    images = np.clip(images + rng.normal(0, 0.04, images.shape), 0, 1).astype(np.float32)
    write_png_folder(images, d.labels[pick], d.class_names, root, [f"img{i:06d}" for i in range(n)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        t0 = time.perf_counter()
        make_folder(folder, args.n)
        print(f"wrote {args.n} PNGs in {time.perf_counter() - t0:.1f}s")
        for r in range(args.runs):
            home = Path(tmp) / f"run{r}"
            (home / "dh").mkdir(parents=True)
            env = {**os.environ, "DAGSTER_HOME": str(home / "dh"), "PRUNE_OUTPUT_DIR": str(home / "out"),
                   "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}", "PRUNE_DATASET": str(folder)}
            start = time.perf_counter()
            subprocess.run([str(Path(sys.executable).parent / "prune-dagster"), "run"], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            summary = json.loads(next((home / "out").glob("runs/*/summary.json")).read_text())
            rows.append({"wall_s": round(wall, 2), "test_accuracy": summary["test_accuracy"],
                         "n_kept": summary["n_kept"], "n_train_split": summary["n_train_split"],
                         "steps": {s["step"]: s["seconds"] for s in summary["steps"]}})
        # ru_maxrss of children is the largest child's peak (KiB on Linux): the prune-dagster process.
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {"n": args.n, "machine": {"arch": platform.machine(), "cores": os.cpu_count()},
              "median_wall_s": statistics.median(r["wall_s"] for r in rows), "peak_rss_mib": round(peak_mib),
              "runs": rows}
    print(f"{'n images':>10}{'wall s (median)':>18}{'peak RSS MiB':>14}{'kept':>8}{'test acc':>10}")
    print(f"{args.n:>10}{result['median_wall_s']:>18}{result['peak_rss_mib']:>14}{rows[0]['n_kept']:>8}"
          f"{rows[0]['test_accuracy']:>10.4f}")
    print("step seconds:", rows[0]["steps"])
    out = ROOT / "benchmarks" / "results" / "folder.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
