"""Quick benchmark: test accuracy after training on the retained fraction chosen by each strategy.

    python benchmarks/scoring_quick.py [--fractions 0.1 0.3 0.5] [--epochs 20] [--seeds 1] [--threads 1]
                                       [--out benchmarks/results/scoring_quick.json]

Digits, stratified 80/20 split (seed 0). Scores are computed once per strategy on the train split
(ccs reuses the EL2N scores: compute_scores("ccs") is EL2N by definition) and the selection is
repeated per fraction. Seed s drives the scoring runs, the selection and the final training; cells
print the mean (± std over seeds when --seeds > 1).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from prune_dagster.core.data.sources import load_digits
from prune_dagster.core.selection.scoring import STRATEGIES, ScoreParams, compute_scores, select_from_scores
from prune_dagster.core.training.train import TrainParams, accuracy, train_cnn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    d = load_digits().with_split(0.2, 0)
    tr, te = d.split == "train", d.split == "test"
    x, y, xt, yt = d.images[tr], d.labels[tr], d.images[te], d.labels[te]
    cfg = ScoreParams()

    def fit_eval(keep: np.ndarray, seed: int) -> float:
        res = train_cnn(x[keep], y[keep], d.n_classes, TrainParams(epochs=args.epochs, seed=seed))
        return accuracy(res.model, xt, yt)

    rows: list[dict] = []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        rows.append({"strategy": "full", "fraction": 1.0, "seed": seed, "n_kept": int(len(y)),
                     "test_accuracy": fit_eval(np.arange(len(y)), seed), "score_seconds": 0.0})
        cache: dict[str, tuple[np.ndarray, float]] = {}
        for strategy in STRATEGIES:
            source = "el2n" if strategy == "ccs" else strategy
            if source not in cache:
                t = time.perf_counter()
                cache[source] = (compute_scores(source, x, y, d.n_classes, cfg, seed=seed), time.perf_counter() - t)
            scores, score_s = cache[source]
            for f in args.fractions:
                keep = select_from_scores(strategy, scores, y, d.n_classes, f, seed=seed, config=cfg)
                rows.append({"strategy": strategy, "fraction": f, "seed": seed, "n_kept": int(len(keep)),
                             "test_accuracy": fit_eval(keep, seed), "score_seconds": round(score_s, 2)})
    total = time.perf_counter() - t0

    def cell(strategy: str, f: float) -> str:
        acc = np.array([r["test_accuracy"] for r in rows if r["strategy"] == strategy and r["fraction"] == f])
        return f"{acc.mean():.4f}" + (f" ± {acc.std():.4f}" if len(acc) > 1 else "")

    width = 17 if args.seeds > 1 else 8
    print(f"digits: {len(y)} train / {len(yt)} test, CNN {args.epochs} epochs, {args.seeds} seed(s); "
          f"full train set: {cell('full', 1.0)}")
    print(f"{'strategy':<16}" + "".join(f"  {'f=' + str(f):<{width}}" for f in args.fractions) + "  score_s")
    for strategy in STRATEGIES:
        score_s = np.mean([r["score_seconds"] for r in rows if r["strategy"] == strategy])
        print(f"{strategy:<16}" + "".join(f"  {cell(strategy, f):<{width}}" for f in args.fractions)
              + f"  {score_s:.1f}")
    print(f"total {total:.0f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                        "score_config": cfg.__dict__, "rows": rows, "seconds": total}, indent=1))


if __name__ == "__main__":
    main()
