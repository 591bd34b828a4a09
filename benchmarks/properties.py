"""Benchmark: image-property checks on planted dark, overexposed, blurred, blank-ish, odd-size,
odd-aspect (and, in colour, grey) images; side by side with CleanVision's Imagelab when installed.

    python benchmarks/properties.py [--k 4 5 6 8] [--per-kind 40] [--no-cleanvision]
                                    [--out benchmarks/results/properties.json]

Two sets, each the clean images plus `per-kind` planted copies of distinct clean sources per kind:
- digits: sklearn's 1,797 digits (÷16) bilinearly upsampled to 32x32, N(0, 0.01) noise; every
  original recorded as 28x28 (an MNIST-like folder).
- colour: 2,000 crops of sklearn's two sample photos and matplotlib's grace_hopper.jpg (side 160-400
  px, aspect 3:4-4:3, random flip),
  resized to 32x32; the original size recorded is the crop's.
- mnist (when data/mnist/mnist.npz exists): the 10,000 real MNIST digits, 28x28.
Planted: dark (x 0.15-0.35), light (overexposed: x 1-1.5 + 0.45-0.65, clipped), blurry (Gaussian
sigma 1.5-2.5 px), blank (a flat grey 0.2-0.8 + 4% of the image + N(0, 0.004)), odd_size (original
1/8 or 8 x its side), odd_aspect (original 3:1 or 1:3), grey (colour only: luma in every channel).
A planted sample counts as found when a check it should fail flags it (blank: low_information or
low_contrast); `clean_flagged` is the share of clean images any check flags. The odd-aspect plant keeps
the pixels and records a 3:1 or 1:3 original, as the folder loader would for such a file (it squashes
every image to one shape and keeps the file's (height, width) in `Dataset.original_sizes`).
`oracle` (per set): for each kind with one statistic, the recall of the best threshold on that
statistic that flags at most 0.5% of the clean images: what no choice of k or unit can beat.

CleanVision sees the same images written as PNG files at their recorded original size ("L" for digits
and for the grey plants, "RGB" otherwise), with its default thresholds.
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
import pandas as pd
import torch
from matplotlib import cbook
from PIL import Image
from scipy.ndimage import gaussian_filter
from sklearn.datasets import load_digits, load_sample_images

from prune_dagster.core.steps.image_properties import (
    ImagePropertyParams,
    fit_thresholds,
    flag_matrix,
    image_statistics,
    robust_z,
)

EXPECTED = {"dark": {"dark"}, "light": {"light"}, "blurry": {"blurry"},
            "blank": {"low_information", "low_contrast"}, "odd_size": {"odd_size"},
            "odd_aspect": {"odd_aspect"}, "grey": {"grayscale_in_colour"}}
CLEANVISION = {"dark": "dark", "light": "light", "blurry": "blurry", "low_information": "low_information",
               "odd_size": "odd_size", "odd_aspect": "odd_aspect_ratio", "grayscale_in_colour": "grayscale"}


def digits_set(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = torch.from_numpy(load_digits().images.astype(np.float32)[:, None] / 16.0)
    up = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).numpy()
    up = np.clip(up + rng.normal(0, 0.01, up.shape), 0, 1).astype(np.float32)
    return up.transpose(0, 2, 3, 1), np.full((len(up), 2), 28.0)


def mnist_set(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 real MNIST digits (28x28, recorded as 28x28): what the checks wrongly flag on real data."""
    z = np.load(path)
    return (z["images"].astype(np.float32) / 255.0)[..., None], np.full((len(z["labels"]), 2), 28.0)


def colour_set(rng: np.random.Generator, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    photos = [Image.fromarray(p) for p in load_sample_images().images]
    photos.append(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    out, sizes = np.empty((n, 32, 32, 3), np.float32), np.empty((n, 2))
    for i in range(n):
        photo = photos[i % len(photos)]
        side, aspect = rng.uniform(160, 400), rng.uniform(0.75, 4 / 3)
        w, h = min(int(side * np.sqrt(aspect)), photo.width - 1), min(int(side / np.sqrt(aspect)), photo.height - 1)
        left, top = rng.integers(0, photo.width - w), rng.integers(0, photo.height - h)
        crop = photo.crop((left, top, left + w, top + h)).resize((32, 32), Image.Resampling.LANCZOS)
        img = np.asarray(crop, np.float32) / 255.0
        out[i], sizes[i] = (img[:, ::-1] if rng.random() < 0.5 else img), (h, w)
    return out, sizes


def plant(kind: str, img: np.ndarray, size: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A defective copy of one clean image and its recorded original (height, width)."""
    if kind == "dark":
        return img * rng.uniform(0.15, 0.35), size
    if kind == "light":
        return np.clip(img * rng.uniform(1.0, 1.5) + rng.uniform(0.45, 0.65), 0, 1), size
    if kind == "blurry":
        return gaussian_filter(img, sigma=(rng.uniform(1.5, 2.5),) * 2 + (0,)), size
    if kind == "blank":
        flat = rng.uniform(0.2, 0.8) + 0.04 * img + rng.normal(0, 0.004, img.shape)
        return np.clip(flat, 0, 1), size
    if kind == "odd_size":
        return img, size * (0.125 if rng.random() < 0.5 else 8.0)
    if kind == "odd_aspect":
        side = np.sqrt(size.prod())
        return img, np.array([side / 1.73, side * 1.73])[:: 1 if rng.random() < 0.5 else -1]
    if kind == "grey":
        return np.repeat(img @ np.array([0.299, 0.587, 0.114])[:, None], 3, axis=-1), size
    raise ValueError(kind)


def planted_set(clean: np.ndarray, sizes: np.ndarray, kinds: list[str], per_kind: int,
                seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clean rows first, then per_kind planted copies per kind from distinct sources; labels = kind."""
    rng = np.random.default_rng(seed)
    sources = rng.choice(len(clean), per_kind * len(kinds), replace=False)
    imgs, szs, truth = [clean], [sizes], ["clean"] * len(clean)
    for j, kind in enumerate(kinds):
        made = [plant(kind, clean[s], sizes[s], rng) for s in sources[j * per_kind:(j + 1) * per_kind]]
        imgs.append(np.stack([m[0] for m in made]).astype(np.float32))
        szs.append(np.stack([m[1] for m in made]))
        truth += [kind] * per_kind
    return np.concatenate(imgs), np.concatenate(szs), np.asarray(truth)


def scores_table(flags: pd.DataFrame, truth: np.ndarray) -> dict:
    """Recall per planted kind, precision and clean share per check, the share of clean flagged."""
    any_flag = flags.any(axis=1).to_numpy()
    clean = truth == "clean"
    out: dict = {"clean_flagged": round(float(any_flag[clean].mean()), 4),
                 "clean_flagged_n": int(any_flag[clean].sum()), "recall": {}, "recall_any": {}, "checks": {}}
    for kind in sorted(set(truth) - {"clean"}):
        rows = truth == kind
        cols = [c for c in EXPECTED[kind] if c in flags.columns]
        hit = flags[cols].any(axis=1).to_numpy() if cols else np.zeros(len(truth), bool)
        out["recall"][kind] = round(float(hit[rows].mean()), 3)
        out["recall_any"][kind] = round(float(any_flag[rows].mean()), 3)
    for check in flags.columns:
        f = flags[check].to_numpy()
        meant = np.isin(truth, [k for k, v in EXPECTED.items() if check in v])
        out["checks"][check] = {"flagged": int(f.sum()), "precision": round(float(meant[f].mean()), 3) if f.any()
                                else None, "clean": int((f & clean).sum())}
    return out


ORACLE = {"dark": [("bright_end", "low")], "light": [("dark_end", "high")], "blurry": [("sharpness", "low")],
          "blank": [("entropy", "low"), ("contrast", "low")], "grey": [("colourfulness", "low")]}


def oracle_recall(table: pd.DataFrame, truth: np.ndarray, clean_share: float = 0.005) -> dict:
    """Per kind: the recall of the best one-statistic threshold that flags at most `clean_share` of clean
    (blank: the better of entropy and contrast)."""
    clean, out = truth == "clean", {}
    allowed = int(np.floor(clean_share * clean.sum()))
    for kind, stats in ORACLE.items():
        recalls = []
        for stat, side in stats:
            if kind not in truth or table[stat].isna().all():
                continue
            values = table[stat].to_numpy() * (1.0 if side == "low" else -1.0)  # flagged: value < threshold
            threshold = np.sort(values[clean])[allowed]  # the (allowed+1)-th lowest clean value is not flagged
            recalls.append(float((values[truth == kind] < threshold).mean()))
        if recalls:
            out[kind] = round(max(recalls), 3)
    return out


def ours(images: np.ndarray, sizes: np.ndarray, ks: list[float], skip: list[str]) -> dict:
    start = time.perf_counter()
    params = ImagePropertyParams(skip=skip)
    table = image_statistics(images, sizes)
    z = robust_z(table, fit_thresholds(table, params.checks))
    seconds = time.perf_counter() - start
    return {k: flag_matrix(z, k) for k in ks}, round(seconds, 2), table


def cleanvision(images: np.ndarray, sizes: np.ndarray, truth: np.ndarray, checks: list[str]) -> pd.DataFrame:
    from cleanvision import Imagelab

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, (img, (h, w)) in enumerate(zip(images, sizes, strict=True)):
            arr = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
            pil = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 or truth[i] == "grey" else arr)
            path = Path(tmp) / f"{i:05d}.png"
            pil.resize((int(round(w)), int(round(h))), Image.Resampling.BILINEAR).save(path)
            paths.append(str(path))
        lab = Imagelab(filepaths=paths)
        lab.find_issues({CLEANVISION[c]: {} for c in checks}, n_jobs=1, verbose=False)
        issues = lab.issues.loc[paths]
    return pd.DataFrame({c: issues[f"is_{CLEANVISION[c]}_issue"].to_numpy() for c in checks})


def run_set(name: str, images: np.ndarray, sizes: np.ndarray, truth: np.ndarray, ks: list[float],
            skip: list[str], with_cv: bool) -> dict:
    flags_by_k, seconds, table = ours(images, sizes, ks, skip)
    result = {"n_clean": int((truth == "clean").sum()), "n_planted": int((truth != "clean").sum()),
              "seconds": seconds, "ours": {str(k): scores_table(f, truth) for k, f in flags_by_k.items()},
              "oracle_recall_at_0.5pct_clean": oracle_recall(table, truth)}
    if with_cv:
        checks = [c for c in CLEANVISION if c not in skip]
        start = time.perf_counter()
        result["cleanvision"] = scores_table(cleanvision(images, sizes, truth, checks), truth)
        result["cleanvision_seconds"] = round(time.perf_counter() - start, 2)
    print(f"\n== {name}: {result['n_clean']} clean, {result['n_planted']} planted ({seconds} s)")
    rows = {f"ours k={k}": v for k, v in result["ours"].items()}
    if "cleanvision" in result:
        rows["cleanvision"] = result["cleanvision"]
    for label, r in rows.items():
        recall = " ".join(f"{kind}={v:.2f}" for kind, v in r["recall"].items())
        print(f"{label:>14}: clean flagged {r['clean_flagged']:.4f} ({r['clean_flagged_n']})  recall {recall}")
    oracle = " ".join(f"{kind}={v:.2f}" for kind, v in result["oracle_recall_at_0.5pct_clean"].items())
    print(f"{'oracle':>14}: best one-statistic recall at <= 0.5% clean flagged per kind: {oracle}")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=float, nargs="+", default=[4.0, 5.0, 6.0, 8.0])
    ap.add_argument("--per-kind", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cleanvision", action="store_true")
    ap.add_argument("--mnist", type=Path, default=Path(__file__).parents[1] / "data" / "mnist" / "mnist.npz",
                    help="real MNIST (npz with images, labels); skipped when absent")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "properties.json")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    try:
        import cleanvision  # noqa: F401
        with_cv = not args.no_cleanvision
    except ImportError:
        print("cleanvision is not installed: ours only (pip install cleanvision)")
        with_cv = False
    kinds = ["dark", "light", "blurry", "blank", "odd_size", "odd_aspect"]
    digits, dsizes = digits_set(rng)
    colour, csizes = colour_set(rng)
    out = {"command": " ".join(["python", *sys.argv]), "k": args.k, "per_kind": args.per_kind, "seed": args.seed,
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                       "load_avg_start": os.getloadavg()}}
    out["digits"] = run_set("digits", *planted_set(digits, dsizes, kinds, args.per_kind, args.seed + 1),
                            args.k, ["grayscale_in_colour"], with_cv)
    out["colour"] = run_set("colour", *planted_set(colour, csizes, [*kinds, "grey"], args.per_kind, args.seed + 2),
                            args.k, [], with_cv)
    if args.mnist.exists():
        mnist, msizes = mnist_set(args.mnist)
        out["mnist"] = run_set("mnist", *planted_set(mnist, msizes, kinds, args.per_kind, args.seed + 3),
                               args.k, ["grayscale_in_colour"], with_cv)
    out["machine"]["load_avg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
