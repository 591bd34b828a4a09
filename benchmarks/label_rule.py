"""How confident must the out-of-fold model be before label_noise_removed removes a sample? Per kind, on
real data: real MNIST (8,000 train), UCI Adult (official train split), Rotten Tomatoes (80% stratified).

For each dataset the default shared representation is computed twice: on the labels as given (what a
rule removes there is the cost: real data has few wrong labels, so most removals are hard, correct
samples) and with 5% of the training labels flipped to another class (recall and precision on the flips).
Each rule is the default capped confident-learning rule (`core/steps/noise_rate.py`) plus
`min_other_probability`: a candidate is removed only when the model gives another class at least that.

    python benchmarks/label_rule.py                    # all three kinds, seed 0
    python benchmarks/label_rule.py --kinds text --seed 1

Prints a table and writes benchmarks/results/label_rule.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_data  # noqa: E402

from prune_dagster.core.data.dataset import content_of  # noqa: E402
from prune_dagster.core.data.sources import load_source  # noqa: E402
from prune_dagster.core.steps.noise_rate import NoiseRateParams, decide_label_issues  # noqa: E402
from prune_dagster.core.training.encoders import encode  # noqa: E402
from prune_dagster.core.training.shared import SharedRepresentationParams, build_representation  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "label_rule.json"
FLIP_RATE = 0.05
MIN_OTHER = (0.0, 0.5, 0.8, 0.9, 0.95)


def train_part(kind: str, seed: int) -> tuple[object, np.ndarray, np.ndarray, int]:
    """(model input, labels, positions, classes) of the kind's real training split."""
    from sklearn.model_selection import train_test_split

    if kind == "image":
        import real  # noqa: PLC0415

        d = real.load(seed)
        return d["x"], d["y"].astype(np.int64), np.arange(len(d["y"])), 10
    if kind == "table":
        ds = load_source(str(real_data.adult()), split_column="split")
        pos = np.flatnonzero(ds.split == "train")
    else:
        ds = load_source(str(real_data.rotten_tomatoes()))
        keep = np.flatnonzero([bool(str(t).strip()) for t in ds.texts])
        pos, _ = train_test_split(keep, train_size=0.8, stratify=ds.labels[keep], random_state=seed)
        pos.sort()
    return encode(kind, content_of(ds, pos), ds.n_classes), ds.labels[pos], pos, ds.n_classes


def flip(labels: np.ndarray, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.zeros(len(labels), dtype=bool)
    truth[rng.choice(len(labels), int(FLIP_RATE * len(labels)), replace=False)] = True
    out = labels.copy()
    out[truth] = (labels[truth] + rng.integers(1, n_classes, truth.sum())) % n_classes
    return out, truth


def rules(labels: np.ndarray, probs: np.ndarray, truth: np.ndarray | None) -> dict[str, dict]:
    out = {}
    for m in MIN_OTHER:
        issues = decide_label_issues(labels, probs, NoiseRateParams(min_other_probability=m)).issues
        row = {"removed": int(issues.sum()), "removed_pct": round(100 * issues.mean(), 2)}
        if truth is not None:
            tp = int((issues & truth).sum())
            p = tp / max(int(issues.sum()), 1)
            r = tp / max(int(truth.sum()), 1)
            row.update(precision=round(p, 3), recall=round(r, 3), f1=round(2 * p * r / max(p + r, 1e-12), 3))
        out[f"min_other={m}"] = row
    return out


def one_kind(kind: str, seed: int) -> dict:
    x, y, pos, c = train_part(kind, seed)
    params = SharedRepresentationParams(seed=seed)
    ids = np.array([f"s{i}" for i in range(len(y))], dtype=object)
    t0 = time.perf_counter()
    clean = build_representation(params, ids, x, y, c)
    flipped, truth = flip(y, c, seed)
    noisy = build_representation(params, ids, x, flipped, c)
    return {"n_train": len(y), "oof_accuracy": round(float(clean.oof_accuracy), 4),
            "seconds": round(time.perf_counter() - t0, 1),
            "real": rules(y, clean.probs, None), "flipped_5pct": rules(flipped, noisy.probs, truth)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", default=["image", "table", "text"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = {"command": "python benchmarks/label_rule.py " + " ".join(sys.argv[1:]), "machine": platform.node(),
               "cpus": __import__("os").cpu_count(), "kinds": {}}
    for kind in args.kinds:
        results["kinds"][kind] = r = one_kind(kind, args.seed)
        print(f"\n{kind}: n={r['n_train']} out-of-fold accuracy {r['oof_accuracy']} ({r['seconds']} s)")
        print(f"{'rule':18} {'real: removed %':>16} {'5% flips: P':>12} {'R':>6} {'F1':>6}")
        for name, row in r["real"].items():
            f = r["flipped_5pct"][name]
            print(f"{name:18} {row['removed_pct']:>16} {f['precision']:>12} {f['recall']:>6} {f['f1']:>6}")
    RESULTS.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
