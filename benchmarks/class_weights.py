"""Benchmark: class weights in the loss against over-sampling, on long-tailed digits and real MNIST.

    python benchmarks/class_weights.py [--sets digits mnist] [--ratios 10 50] [--seeds 0 1 2]
                                       [--threads 1] [--methods none cw_inverse ...] [--out PATH]
    python benchmarks/class_weights.py --sets digits --ratios 50 --paired-timing 7 --out PATH  # timing only
    python benchmarks/class_weights.py --resummarise [--timing-json PATH]  # summary of complete groups

Data: sklearn digits (the project's `load_digits`, stratified 80/20 split with the run's seed) and
real MNIST (`benchmarks/real.py::load(seed)`: 8,000 train / 2,000 test). Only the TRAINING split is
made long-tailed (`long_tail_indices`): class c keeps n_c = round(n_max * ratio^(-rank_c / (C - 1)))
samples, n_max = the smallest class count of the split (so every class can fill its quota), the rank
order of the classes shuffled by the seed (which digit is rare changes with the seed). The test split
stays as it is (balanced up to the stratified split).

Methods (issue 15 item 2), each trains the document CNN with `train_cnn` and trained_model's defaults
(20 epochs, batch 64, Adam 1e-3), seed = run seed:
- none: the long-tailed split as it is;
- cw_inverse / cw_effective: `class_balanced.sampler: class_weight` (`loss_weights`), inverse frequency
  or effective number (beta 0.999, the default), samples unchanged;
- smote / random_over: `rebalance(...)` with max_imbalance=1.0 (every class raised to the largest);
- smote_2: SMOTE at the step's default max_imbalance=2.0.
Metrics on the untouched test split: accuracy, balanced accuracy, macro F1; train_seconds (the training
loop, `TrainResult.seconds`), resample_seconds, n_train, and train seconds / none's in the same
(set, ratio, seed). The JSON is rewritten after every run, so a cut-short run keeps what it measured.
Wall seconds on a shared machine are noisy; `--paired-timing` trains none and the class-weight methods
back to back N times and also reports CPU seconds of the process (the work, less the contention).
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
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from prune_dagster.core.data.dataset import TEST, TRAIN
from prune_dagster.core.data.sources import load_digits
from prune_dagster.core.steps.balance import BalanceParams, loss_weights, rebalance
from prune_dagster.core.training.class_weights import ClassWeightParams, class_weights
from prune_dagster.core.training.train import TrainParams, predict_proba, train_cnn

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "class_weights.json"
# method -> (sampler, class_weight_kind or max_imbalance)
METHODS: dict[str, tuple[str, str | float | None]] = {
    "none": ("none", None),
    "cw_inverse": ("class_weight", "inverse_frequency"),
    "cw_effective": ("class_weight", "effective_number"),
    "smote": ("smote", 1.0),
    "random_over": ("random_over", 1.0),
    "smote_2": ("smote", 2.0),
}
CLASS_WEIGHT = ("cw_inverse", "cw_effective")
TIME_SLACK = 1.1  # the target's "no more training time than none", with 10% for timing noise


def long_tail_quotas(n_max: int, n_classes: int, ratio: float, order: np.ndarray) -> np.ndarray:
    """Per-class sample counts of an exponential profile: the class at rank k keeps n_max * ratio^(-k/(C-1))."""
    rank = np.empty(n_classes, dtype=np.int64)
    rank[order] = np.arange(n_classes)
    return np.maximum(1, np.round(n_max * ratio ** (-rank / max(n_classes - 1, 1)))).astype(np.int64)


def long_tail_indices(labels: np.ndarray, n_classes: int, ratio: float, seed: int) -> np.ndarray:
    """Sorted positions of a long-tailed subset of `labels` (the training split only).

    n_max is the smallest class count, so every class fills its quota exactly; the class order (which
    class is largest, which rarest) is a permutation drawn from `seed`, and so are the kept samples."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=n_classes)
    if counts.min() < 1:
        raise ValueError(f"every class needs a training sample; counts {counts.tolist()}")
    rng = np.random.default_rng([seed, 15])
    quotas = long_tail_quotas(int(counts.min()), n_classes, ratio, rng.permutation(n_classes))
    keep = [rng.choice(np.flatnonzero(labels == c), int(q), replace=False) for c, q in enumerate(quotas)]
    return np.sort(np.concatenate(keep))


def load_set(name: str, seed: int) -> dict:
    """Train/test arrays of one set; images (N, H, W, 1) float32 in [0, 1]."""
    if name == "digits":
        ds = load_digits().with_split(0.2, seed)
        tr, te = ds.split == TRAIN, ds.split == TEST
        return {"x": ds.images[tr], "y": ds.labels[tr], "x_test": ds.images[te], "y_test": ds.labels[te],
                "class_names": ds.class_names}
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import real  # noqa: PLC0415  (the MNIST loader lives with the real-data benchmark)

    d = real.load(seed)
    return {**d, "class_names": tuple(str(c) for c in range(10))}


def prepare(method: str, x: np.ndarray, y: np.ndarray, class_names: tuple[str, ...],
            seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
    """The training arrays and loss weights a method trains with, and the seconds its resampling took."""
    sampler, arg = METHODS[method]
    start = time.perf_counter()
    if sampler in ("none", "class_weight"):
        params = BalanceParams(sampler=sampler, seed=seed, **({"class_weight_kind": arg} if arg else {}))
        return x, y, loss_weights(params, y, len(class_names)), time.perf_counter() - start
    ids = np.array([f"s{i:05d}" for i in range(len(y))], dtype=object)
    res = rebalance(ids, x, y, class_names, sampler=sampler, max_imbalance=float(arg), seed=seed)
    seconds = time.perf_counter() - start
    if res.synthetic is None:
        return x, y, None, seconds
    return (np.concatenate([x, res.synthetic.images]), np.concatenate([y, res.synthetic.labels]), None, seconds)


def run_one(d: dict, method: str, seed: int, threads: int, epochs: int = 20) -> dict:
    """Train one method on the long-tailed split; metrics on the untouched test split."""
    x, y, w, resample_s = prepare(method, d["x"], d["y"], d["class_names"], seed)
    cpu = time.process_time()  # CPU seconds: the work, less the other jobs sharing the cores
    res = train_cnn(x, y, len(d["class_names"]), TrainParams(epochs=epochs, seed=seed, threads=threads), class_weight=w)
    cpu = time.process_time() - cpu
    pred = predict_proba(res.model, d["x_test"]).argmax(1)
    yt = d["y_test"]
    return {"method": method, "n_train": int(len(y)), "accuracy": float(accuracy_score(yt, pred)),
            "balanced_accuracy": float(balanced_accuracy_score(yt, pred)),
            "macro_f1": float(f1_score(yt, pred, average="macro")),
            "train_seconds": round(res.seconds, 2), "train_cpu_seconds": round(cpu, 2),
            "resample_seconds": round(resample_s, 3)}


def weight_note(y: np.ndarray, n_classes: int) -> dict:
    """How far effective-number weights (beta 0.999) sit from inverse frequency on these counts."""
    inv = class_weights(y, n_classes, ClassWeightParams(method="inverse_frequency"))
    eff = class_weights(y, n_classes, ClassWeightParams(method="effective_number", beta=0.999))
    return {"counts": np.bincount(y, minlength=n_classes).tolist(),
            "max_over_min_inverse": round(float(inv.max() / inv.min()), 2),
            "max_over_min_effective": round(float(eff.max() / eff.min()), 2),
            "max_relative_difference": round(float(np.max(np.abs(eff - inv) / inv)), 3)}


def mean_std(values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": int(len(a))}


def summarise(rows: list[dict]) -> dict:
    """Mean ± std over seeds per (set, ratio, method); train-time ratio to none of the same (set, ratio, seed)."""
    none_s = {(r["set"], r["ratio"], r["seed"]): r["train_seconds"] for r in rows if r["method"] == "none"}
    out: dict = {}
    for r in rows:
        key = f"{r['set']}/{r['ratio']}/{r['method']}"
        g = out.setdefault(key, {"set": r["set"], "ratio": r["ratio"], "method": r["method"], "_rows": []})
        g["_rows"].append(r)
    for g in out.values():
        rs = g.pop("_rows")
        for m in ("accuracy", "balanced_accuracy", "macro_f1", "train_seconds", "n_train"):
            g[m] = mean_std([r[m] for r in rs])
        ratios = [r["train_seconds"] / none_s[(r["set"], r["ratio"], r["seed"])] for r in rs
                  if (r["set"], r["ratio"], r["seed"]) in none_s]
        g["time_vs_none"] = mean_std(ratios) if ratios else None
    return out


def check_target(summary: dict, ratio: float = 50) -> dict:
    """Issue 15: at ratio 50, class_weight's balanced accuracy >= SMOTE's (full balance), train time
    <= none's x 1.1; per set and class-weight kind, on the means over seeds."""
    verdict: dict = {}
    for g in summary.values():
        if g["ratio"] != ratio or g["method"] not in CLASS_WEIGHT:
            continue
        smote, none = summary.get(f"{g['set']}/{g['ratio']}/smote"), summary.get(f"{g['set']}/{g['ratio']}/none")
        if smote is None or none is None or g["time_vs_none"] is None:
            continue
        acc_ok = g["balanced_accuracy"]["mean"] >= smote["balanced_accuracy"]["mean"]
        time_ok = g["time_vs_none"]["mean"] <= TIME_SLACK
        verdict[f"{g['set']}/{g['method']}"] = {
            "balanced_accuracy": round(g["balanced_accuracy"]["mean"], 4),
            "smote_balanced_accuracy": round(smote["balanced_accuracy"]["mean"], 4),
            "time_vs_none": round(g["time_vs_none"]["mean"], 3), "accuracy_ok": acc_ok, "time_ok": time_ok,
            # The work itself: same samples x epochs as none (over-samplers train on more).
            "n_train_vs_none": round(g["n_train"]["mean"] / none["n_train"]["mean"], 3),
            "smote_time_vs_none": round(smote["time_vs_none"]["mean"], 3),
            "holds": acc_ok and time_ok}
    return verdict


def fmt(ms: dict | None, scale: float = 100.0, nd: int = 1) -> str:
    return "-" if ms is None else f"{ms['mean'] * scale:.{nd}f} ± {ms['std'] * scale:.{nd}f}"


def table(summary: dict) -> list[str]:
    lines = ["| set | ratio | method | n_train | accuracy % | balanced acc % | macro F1 % | train s | × none |",
             "|---|---|---|---|---|---|---|---|---|"]
    for g in summary.values():
        lines.append(f"| {g['set']} | {g['ratio']:g} | {g['method']} | {g['n_train']['mean']:.0f} | "
                     f"{fmt(g['accuracy'])} | {fmt(g['balanced_accuracy'])} | {fmt(g['macro_f1'])} | "
                     f"{fmt(g['train_seconds'], 1.0)} | {fmt(g['time_vs_none'], 1.0, 2)} |")
    return lines


def paired_timing(d: dict, seed: int, threads: int, repeats: int, epochs: int) -> dict:
    """none and the class-weight methods trained back to back, `repeats` rounds with a rotating order:
    medians and the median paired ratio to none (the grid's single runs are noisy on a shared machine)."""
    methods = ("none", *CLASS_WEIGHT)
    out: dict = {"repeats": repeats}
    for key in ("train_seconds", "train_cpu_seconds"):
        out[key] = {m: [] for m in methods}
    for i in range(repeats):
        for m in methods[i % 3:] + methods[:i % 3]:
            row = run_one(d, m, seed, threads, epochs)
            for key in ("train_seconds", "train_cpu_seconds"):
                out[key][m].append(row[key])
    for key in ("train_seconds", "train_cpu_seconds"):
        v = out[key]
        out[f"median_{key}"] = {m: float(np.median(v[m])) for m in methods}
        out[f"median_{key}_ratio_to_none"] = {
            m: round(float(np.median([a / b for a, b in zip(v[m], v["none"], strict=True)])), 3) for m in CLASS_WEIGHT}
    return out


def complete_rows(rows: list[dict]) -> list[dict]:
    """Rows of the (set, ratio, seed) groups that ran every method (a cut-short run leaves one partial)."""
    methods = {r["method"] for r in rows}
    seen: dict[tuple, set] = {}
    for r in rows:
        seen.setdefault((r["set"], r["ratio"], r["seed"]), set()).add(r["method"])
    return [r for r in rows if seen[(r["set"], r["ratio"], r["seed"])] == methods]


def resummarise(out: Path, timing: Path | None) -> dict:
    """Recompute the summary and verdict of a written run from its complete groups; attach paired timing."""
    result = json.loads(out.read_text())
    rows = complete_rows(result["rows"])
    result["summary"], result["summary_rows"] = summarise(rows), len(rows)
    result["target"] = check_target(result["summary"])
    if timing is not None:
        result["paired_timing"] = json.loads(timing.read_text())
    out.write_text(json.dumps(result, indent=1))
    return result


def run_grid(args: argparse.Namespace, result: dict) -> None:
    """Every (set, seed, ratio, method), or the paired timing; the JSON rewritten after each run."""
    for name in args.sets:
        for seed in args.seeds[:1] if args.paired_timing else args.seeds:
            full = load_set(name, seed)
            for ratio in args.ratios:
                keep = long_tail_indices(full["y"], len(full["class_names"]), ratio, seed)
                d = {**full, "x": full["x"][keep], "y": full["y"][keep]}
                if args.paired_timing:
                    t = paired_timing(d, seed, args.threads, args.paired_timing, args.epochs)
                    result["rows"].append({"set": name, "ratio": ratio, "seed": seed, **t})
                    print(json.dumps(result["rows"][-1]), flush=True)
                    args.out.write_text(json.dumps(result, indent=1))
                    continue
                result["weights"][f"{name}/{ratio:g}/{seed}"] = weight_note(d["y"], len(d["class_names"]))
                for method in args.methods:
                    row = {"set": name, "ratio": ratio, "seed": seed, **run_one(d, method, seed, args.threads,
                                                                               args.epochs)}
                    result["rows"].append(row)
                    print(json.dumps(row), flush=True)
                    result["summary"] = summarise(result["rows"])
                    result["target"] = check_target(result["summary"])
                    result["machine"]["load_avg_end"] = os.getloadavg()
                    args.out.write_text(json.dumps(result, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", choices=["digits", "mnist"], default=["digits", "mnist"])
    ap.add_argument("--ratios", nargs="+", type=float, default=[10.0, 50.0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1, help="torch threads while training")
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    ap.add_argument("--epochs", type=int, default=TrainParams().epochs, help="20 = trained_model's default")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--paired-timing", type=int, default=0, metavar="N",
                    help="instead of the grid: N back-to-back rounds of none / class weights (first seed)")
    ap.add_argument("--resummarise", action="store_true", help="recompute --out's summary from its complete groups")
    ap.add_argument("--timing-json", type=Path, help="with --resummarise: a --paired-timing result to attach")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.resummarise:
        result = resummarise(args.out, args.timing_json)
        print("\n".join(table(result["summary"])))
        print(json.dumps(result["target"], indent=1))
        return 0
    result: dict = {"command": "python benchmarks/class_weights.py " + " ".join(argv if argv is not None
                                                                                 else sys.argv[1:]),
                    "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "python": platform.python_version(), "torch": torch.__version__,
                                "threads": args.threads, "load_avg_start": os.getloadavg()},
                    "long_tail": "training split only; n_c = round(n_max * ratio^(-rank/(C-1))), n_max = smallest "
                                 "class count of the split, class order shuffled by the seed; test split untouched",
                    "rows": [], "weights": {}, "complete": False}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    run_grid(args, result)
    result["complete"] = True
    args.out.write_text(json.dumps(result, indent=1))
    if args.paired_timing:
        return 0
    print("\n".join(table(result["summary"])))
    print(json.dumps(result["target"], indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
