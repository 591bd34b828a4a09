"""Benchmark: adding 1% new samples to an already-pruned set, incrementally vs a full prune.

    python benchmarks/incremental.py [--n 1000000] [--share 0.01] [--out benchmarks/results/incremental.json]

1. generates (or reuses) the synthetic dataset of benchmarks/scale.py (data/scale/<n>-0/);
2. runs the real graph raw_dataset → features_selected in-process (`dagster.materialize`, defaults,
   temporary DAGSTER_HOME): the full prune, timed;
3. builds the PruneIndex from that selection (a one-off after each full prune), timed;
4. adds `share` × n new samples, made like the dataset's (fresh clean digit variants, plus 1% exact
   copies, 1% near copies and 1% noise images of them) and times `PruneIndex.add`.
Prints a table and writes JSON: the target is add ≤ 5% of the full prune.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prune_dagster.core import pipeline  # noqa: E402
from prune_dagster.core.data.sources import load_source  # noqa: E402
from prune_dagster.core.incremental import PruneIndex  # noqa: E402
from prune_dagster.fixtures.synthetic import clean_variants, digit_images, make_scale_dataset  # noqa: E402

GRAPH = ["raw_dataset", *pipeline.cleaning_graph()]


def full_prune(folder: Path, tmp: Path):
    import dagster as dg

    os.environ.update({"DAGSTER_HOME": str(tmp / "home"), "PRUNE_OUTPUT_DIR": str(tmp / "out"),
                       "PRUNE_DATASET": str(folder), "PRUNE_ENGINE_ADDRESS": ""})
    (tmp / "home").mkdir(exist_ok=True)
    (tmp / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    from prune_dagster.definitions import defs
    from prune_dagster.defs.engine import ComputeEngine
    from prune_dagster.defs.io import RunScopedIOManager
    from prune_dagster.defs.resources import OutputStore

    by_key = {a.key.to_user_string(): a for a in defs.assets or ()}
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize([by_key[k] for k in GRAPH], instance=instance,
                                resources={"io_manager": RunScopedIOManager(), "output_store": OutputStore(),
                                           "engine": ComputeEngine(address="")})
    return result.output_for_node("features_selected")


def new_batch(dataset, selection, m: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    digits, labels = digit_images()
    pick = rng.choice(len(digits), m)
    images = clean_variants(digits[pick], rng)[..., None]
    labels = labels[pick].astype(np.int64)
    k = max(1, m // 100)
    src = dataset.index_of(selection.kept_ids[rng.choice(len(selection.kept_ids), 2 * k, replace=False)])
    images[:k] = dataset.images[src[:k]]  # exact copies of kept samples
    labels[:k] = dataset.labels[src[:k]]
    images[k:2 * k] = np.clip(dataset.images[src[k:]] + rng.normal(0, 0.005, (k, 8, 8, 1)), 0, 1)
    labels[k:2 * k] = dataset.labels[src[k:]]
    images[2 * k:3 * k] = rng.random((k, 8, 8, 1))
    ids = np.array([f"new/{i:07d}" for i in range(m)], dtype=object)
    return ids, images.astype(np.float32), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--share", type=float, default=0.01)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/incremental.json"))
    args = parser.parse_args()
    folder = make_scale_dataset(args.n, ROOT / "data" / "scale" / f"{args.n}-0", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        selection = full_prune(folder, Path(tmp))
        full = time.perf_counter() - t
    dataset = load_source(str(folder))
    t = time.perf_counter()
    index = PruneIndex.build(dataset, selection)
    build = time.perf_counter() - t
    m = int(round(args.share * len(selection.kept_ids)))
    ids, images, labels = new_batch(dataset, selection, m)
    t = time.perf_counter()
    result = index.add(ids, images, labels)
    add = time.perf_counter() - t
    row = {"n": args.n, "new": m, "full_prune_s": round(full, 2), "index_build_s": round(build, 2),
           "add_s": round(add, 2), "add_share_of_full": round(add / full, 4),
           "add_steps_s": {k: round(v, 3) for k, v in result.seconds.items()},
           "build_steps_s": {k: round(v, 2) for k, v in index.build_seconds.items()},
           "new_removed_by_reason": result.removed["reason"].value_counts().to_dict(),
           "needs_full_prune": result.needs_full_prune}
    print(f"{'n':>9} {'new':>6} {'full prune s':>13} {'index build s':>14} {'add s':>7} {'add/full':>9}")
    print(f"{args.n:>9} {m:>6} {full:>13.1f} {build:>14.1f} {add:>7.2f} {add / full:>9.2%}")
    print("add per step:", row["add_steps_s"], "\nremoved:", row["new_removed_by_reason"], row["needs_full_prune"])
    out = {"command": " ".join(sys.argv), "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
           "target": "add <= 5% of the full prune", "result": row}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
