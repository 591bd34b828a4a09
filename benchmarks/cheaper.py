"""Where the default graph's compute goes on real MNIST, and what is cheaper without losing accuracy.

Two parts, each in one process (the data loaded once), per seed the same stratified 8,000 / 2,000 split
as benchmarks/real.py:

- `representation`: the shared representation's K-fold runs (folds x epochs x torch threads): seconds,
  sample passes, out-of-fold accuracy, and the test accuracy of the final CNN trained on the 80% the
  variant's EL2N keeps (what the default graph trains on, cleaning aside);
- `final`: the final CNN (20 epochs) on every training sample and on EL2N's 80%, plain and with InfoBatch
  (dynamic pruning: easy samples skipped, full data in the last epochs), with 1 or 2 torch threads:
  seconds, sample passes, samples per second, test accuracy.

    python benchmarks/cheaper.py --part representation --seeds 0
    python benchmarks/cheaper.py --part final --seeds 0 1 2

Prints a table and writes benchmarks/results/cheaper_<part>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real  # noqa: E402

from prune_dagster.core.selection.dynamic import make_epoch_plan  # noqa: E402
from prune_dagster.core.selection.select import select_from_scores  # noqa: E402
from prune_dagster.core.selection.strategies import PruneParams  # noqa: E402
from prune_dagster.core.steps.noise_rate import decide_label_issues  # noqa: E402
from prune_dagster.core.training.representation import RepresentationParams, compute_representation  # noqa: E402
from prune_dagster.core.training.train import TrainParams, accuracy, train_cnn  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# name: RepresentationParams overrides. A fold model takes max(epochs, min_steps / steps per epoch)
# epochs, so on 8,000 rows min_steps (180 at batch 128) sets the cost, not `epochs`.
REPRESENTATIONS = {
    "4 folds, 1 thread (old default)": {"folds": 4, "threads": 1},
    "4 folds, 2 threads": {"folds": 4, "threads": 2},
    "4 folds, min_steps 90": {"folds": 4, "threads": 2, "epochs": 2, "min_steps": 90},
    "3 folds": {"folds": 3, "threads": 2},
    "2 folds": {"folds": 2, "threads": 2},
    "2 folds, min_steps 120": {"folds": 2, "threads": 2, "epochs": 2, "min_steps": 120},
}
FLIP_RATE = 0.1
FINALS = {  # name: (kept set, dynamic settings or None, threads)
    "all, plain, 2 threads": ("all", None, 2),
    "all, plain, 1 thread": ("all", None, 1),
    "all, infobatch 0.5": ("all", {"prune_ratio": 0.5, "delta": 0.875}, 2),
    "all, infobatch 0.7": ("all", {"prune_ratio": 0.7, "delta": 0.875}, 2),
    "el2n 0.8, plain": ("el2n", None, 2),
    "el2n 0.8, infobatch 0.5": ("el2n", {"prune_ratio": 0.5, "delta": 0.875}, 2),
}


def el2n_keep(rep, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    return select_from_scores("el2n", rep.el2n, labels, 10, fraction, seed, PruneParams(target_fraction=fraction))


def final(d: dict, keep: np.ndarray, dynamic: dict | None, threads: int, seed: int) -> dict:
    plan = None if dynamic is None else make_epoch_plan("infobatch", len(keep), seed=seed, **dynamic)
    res = train_cnn(d["x"][keep], d["y"][keep], 10, TrainParams(epochs=20, lr=1e-3, seed=seed, threads=threads),
                    epoch_plan=plan)
    return {"test_accuracy_pct": round(100 * accuracy(res.model, d["x_test"], d["y_test"]), 2),
            "seconds": round(res.seconds, 1), "sample_passes": int(res.sample_passes),
            "samples_per_second": round(res.sample_passes / res.seconds)}


def part_representation(d: dict, seed: int) -> list[dict]:
    rows = []
    noisy, flipped = real.inject_flips(d["y"], FLIP_RATE, seed)
    for name, over in REPRESENTATIONS.items():
        params = RepresentationParams(seed=seed, **over)
        rep = compute_representation(d["ids"], d["x"], d["y"], 10, params)
        keep = el2n_keep(rep, d["y"], 0.8, seed)
        on_flips = compute_representation(d["ids"], d["x"], noisy, 10, params)
        issues = decide_label_issues(noisy, on_flips.probs).issues
        rows.append({"variant": name, "seed": seed, "seconds": round(rep.seconds, 1),
                     "sample_passes": int(rep.sample_passes), "oof_accuracy_pct": round(100 * rep.oof_accuracy, 2),
                     "label_flips_f1": real.prf(issues, flipped)["f1"],
                     "el2n_0.8_then_final": final(d, keep, None, 2, seed)["test_accuracy_pct"]})
        print(rows[-1], flush=True)
    return rows


# The document's CNN per training sample: forward MACs of conv 3x3x1x64 at 28x28, FC 12,544 -> 128 and
# 128 -> 10; a training step costs about 3 forward passes (forward, and two products backward).
CNN_TRAIN_FLOPS = 3 * 2 * (28 * 28 * 64 * 9 + 64 * 14 * 14 * 128 + 128 * 10)


def peak_gflops(threads: int, size: int = 2048, repeats: int = 20) -> float:
    """The machine's measured float32 matrix-product peak with `threads` torch threads (GFLOP/s)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        torch.mm(a, b)
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        return round(2 * size**3 * repeats / (time.perf_counter() - start) / 1e9, 1)
    finally:
        torch.set_num_threads(previous)


def part_final(d: dict, seed: int) -> list[dict]:
    rep = compute_representation(d["ids"], d["x"], d["y"], 10, RepresentationParams(seed=seed, threads=2))
    kept = {"all": np.arange(len(d["y"])), "el2n": el2n_keep(rep, d["y"], 0.8, seed)}
    rows = []
    for name, (which, dynamic, threads) in FINALS.items():
        result = final(d, kept[which], dynamic, threads, seed)
        peak = peak_gflops(threads)
        rows.append({"variant": name, "seed": seed, **result, "peak_gflops": peak,
                     "share_of_peak": round(result["samples_per_second"] * CNN_TRAIN_FLOPS / 1e9 / peak, 3)})
        print(rows[-1], flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == name]
        keys = [k for k, v in mine[0].items() if isinstance(v, int | float) and k != "seed"]
        out[name] = {k: round(float(np.mean([r[k] for r in mine])), 2) for k in keys}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["representation", "final"], required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", default=None, help="only these variants (names as listed)")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/cheaper_<part>.json")
    args = parser.parse_args(argv)
    if args.variants:
        for table in (REPRESENTATIONS, FINALS):
            for name in [n for n in table if n not in args.variants]:
                del table[name]
    start_load = os.getloadavg()
    rows = []
    for seed in args.seeds:
        d = real.load(seed)
        rows += (part_representation if args.part == "representation" else part_final)(d, seed)
    table = summary(rows)
    for name, s in table.items():
        print(f"{name:<30} " + "  ".join(f"{k}={v}" for k, v in s.items()))
    out = args.out or RESULTS / f"cheaper_{args.part}.json"
    out.write_text(json.dumps({"command": "python benchmarks/cheaper.py " + " ".join(sys.argv[1:]),
                               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                           "torch_threads_default": torch.get_num_threads(),
                                           "load_avg_start": start_load, "load_avg_end": os.getloadavg()},
                               "rows": rows, "summary": table}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
