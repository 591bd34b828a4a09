"""Digits-like datasets of any size with planted defects and their ground truth, for scale benchmarks.

`make_scale_dataset(n, out_dir)` writes n samples of 8x8x1 float32 images in [0, 1] to a folder:

================  ==========================================================================
file              what
================  ==========================================================================
images.npy        (N, 8, 8, 1) float32, written block by block through a memory map
labels.npy        (N,) int64: the given label (flipped for label_flip rows)
ids.npy           (N,) '<U16': "s0000001" clean variants, "dup/…", "near/…", "outlier/…" planted
split.npy         (N,) '<U5': "train" / "test"; the test split holds clean variants only
class_names.json  ["0", …, "9"]
truth.csv         id, defect, kind, source_id, true_label, given_label (defects.TRUTH_COLUMNS)
synthetic.json    how it was made (n, seed, every rate and setting, the counts): a cache key
================  ==========================================================================

A clean sample is one of sklearn's 1,797 bundled digits (÷16) moved by a random sub-pixel shift
(uniform ±`shift` px per axis) plus a mild elastic distortion (a 3x3 grid of N(0, `elastic`) px
displacements, bilinearly upsampled to 8x8), resampled bilinearly, plus N(0, `pixel_noise`) pixel
noise, clipped to [0, 1]. The variation has two jobs. Two clean variants of one digit must not be
near duplicates: in near_deduplicated's space (brightness-normalised 32-component PCA of each image
and its one-pixel rolls), in units of its radius unit (the median nearest-neighbour distance), no
clean sample had a neighbour closer than 0.53 at 10k samples or 0.44 at 100k (10,000 of them
sampled), while every planted near duplicate lay within 0.18 of its source; the step's radius is
0.3 (benchmarks/scale.py --distances measures this). And the classes must stay learnable, or the label-noise step flags
clean samples by the thousand: an RBF SVC classifies 97.5% of clean variants right (5-fold on 6k);
with ±1 px shifts and elastic 0.5 it was 91%, and the step removed 6% of the clean samples.

Defects are planted as in `defects.py` (the same near-duplicate and outlier kinds, its helpers;
foreign outliers carry a random stain, see `stained_foreign`), into the train split only, each
sample carrying at most one: symmetric label flips on existing clean train samples; exact
duplicates, near duplicates and inverted outliers copied from unflipped clean train samples
(distinct sources); noise and foreign outliers from nothing. Counts are `round(rate × n)` of the n
rows written (round half up), so the folder holds exactly n rows; added rows go to random
positions, clean rows keep their order.

Memory stays bounded: clean images are made in blocks of `BLOCK` rows, each from its own random
stream ([seed, stage, block]), straight into the memory-mapped images.npy; planted copies then read
their sources back from it. Same n, seed and settings → byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from prune_dagster.core.defects import (
    NEAR_KINDS,
    OUTLIER_KINDS,
    TRUTH_COLUMNS,
    DefectConfig,
    _count,
    _foreign,
    _kinds_for,
    _near_duplicate,
)
from prune_dagster.core.errors import ConfigError

FORMAT = "prune-dagster synthetic digits v1"
BLOCK = 16_384  # clean rows per random stream and per write: fixed, so the bytes never depend on it
ID_DTYPE, SPLIT_DTYPE = "<U16", "<U5"
N_CLASSES = 10
MAX_N = 10_000_000  # ids carry 7 digits
FILES = ("images.npy", "labels.npy", "ids.npy", "split.npy", "class_names.json", "truth.csv", "synthetic.json")


@dataclass(frozen=True)
class ScaleConfig:
    """Rates are fractions of the n rows written; the variation settings are in pixels / pixel units."""

    exact_duplicate_rate: float = 0.01
    near_duplicate_rate: float = 0.01
    label_noise_rate: float = 0.1
    outlier_rate: float = 0.01
    test_fraction: float = 0.2
    shift: float = 0.3  # max sub-pixel shift per axis
    elastic: float = 0.3  # std of the coarse 3x3 displacement grid
    pixel_noise: float = 0.1  # std of the Gaussian pixel noise of every sample
    near_noise_std: float = 0.01  # near duplicates of kind pixel_noise
    near_brightness_change: float = 0.1  # near duplicates of kind brightness: gain 1 ± U(0.5, 1) × this

    def __post_init__(self) -> None:
        for name in ("exact_duplicate_rate", "near_duplicate_rate", "label_noise_rate", "outlier_rate"):
            if not 0.0 <= getattr(self, name) <= 0.5:
                raise ConfigError(f"ScaleConfig.{name} must be in [0, 0.5], got {getattr(self, name)}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"ScaleConfig.test_fraction must be in (0, 1), got {self.test_fraction}")
        for name in ("shift", "elastic", "pixel_noise"):
            if getattr(self, name) < 0:
                raise ConfigError(f"ScaleConfig.{name} must be >= 0, got {getattr(self, name)}")
        # near_noise_std and near_brightness_change are checked by DefectConfig.
        DefectConfig(near_noise_std=self.near_noise_std, near_brightness_change=self.near_brightness_change)


def make_scale_dataset(n: int, out_dir: Path | str, seed: int = 0, config: ScaleConfig | None = None,
                       **settings: float) -> Path:
    """Write the dataset of `n` rows to `out_dir` and return it; ScaleConfig fields may be given as
    keyword arguments. If `out_dir` already holds this exact dataset (same synthetic.json) it is
    reused as is; a folder holding something else is replaced only if it is an earlier synthetic
    dataset (has synthetic.json), never otherwise."""
    config = config or ScaleConfig()
    if settings:
        unknown = set(settings) - set(asdict(config))
        if unknown:
            raise ConfigError(f"unknown setting(s) {sorted(unknown)}; expected ScaleConfig fields "
                              f"{sorted(asdict(config))}")
        config = ScaleConfig(**{**asdict(config), **settings})
    if not 100 <= n <= MAX_N:
        raise ConfigError(f"n={n}; expected 100 <= n <= {MAX_N}")
    out_dir = Path(out_dir)
    plan = _plan(n, seed, config)
    manifest = {"format": FORMAT, "n": n, "seed": seed, "config": asdict(config), "counts": plan.counts()}
    if is_complete(out_dir, manifest):
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "synthetic.json").exists():
        raise ConfigError(f"{out_dir} exists and is not a synthetic dataset; choose an empty or new folder")
    tmp = out_dir.with_name(out_dir.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write(plan, config, seed, tmp)
        (tmp / "synthetic.json").write_text(json.dumps(manifest, indent=1))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def is_complete(folder: Path, manifest: dict) -> bool:
    """`folder` holds every file and its synthetic.json equals `manifest`."""
    try:
        return all((folder / f).is_file() for f in FILES) and \
            json.loads((folder / "synthetic.json").read_text()) == json.loads(json.dumps(manifest))
    except (OSError, ValueError):
        return False


def read_truth(folder: Path | str) -> pd.DataFrame:
    """truth.csv with ids as strings and an empty source_id as ""."""
    return pd.read_csv(Path(folder) / "truth.csv", dtype={"id": str, "source_id": str},
                       keep_default_na=False)


# ------------------------------------------------------------------------------------------------
# Implementation


def _rng(seed: int, stage: int, block: int | None = None) -> np.random.Generator:
    # One stream per stage (and per block of clean rows): changing one rate leaves the others alone.
    return np.random.default_rng([seed, stage] if block is None else [seed, stage, block])


@dataclass
class _Plan:
    """Everything but the pixels: which row is what. Clean rows are indexed b = 0..n_clean-1."""

    n: int
    source_digit: np.ndarray  # (n_clean,) index into the bundled digits
    true_label: np.ndarray  # (n_clean,)
    given_label: np.ndarray  # (n_clean,) after flips
    test: np.ndarray  # (n_clean,) bool
    flipped: np.ndarray  # sorted clean indices
    clean_pos: np.ndarray  # (n_clean,) increasing output positions of the clean rows
    added: pd.DataFrame  # one row per added sample: id, defect, kind, source (clean index or -1), pos

    def counts(self) -> dict[str, int]:
        by = self.added.groupby(["defect", "kind"]).size()
        return {"n": self.n, "clean": len(self.source_digit), "test": int(self.test.sum()),
                "label_flip": len(self.flipped), **{f"{d}/{k}": int(v) for (d, k), v in by.items()}}


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.images / 16.0).astype(np.float32), bunch.target.astype(np.int64)


def _plan(n: int, seed: int, config: ScaleConfig) -> _Plan:
    images, targets = _digits()
    n_dup = _count(config.exact_duplicate_rate, n)
    n_near = _count(config.near_duplicate_rate, n)
    n_out = _count(config.outlier_rate, n)
    n_clean = n - n_dup - n_near - n_out
    if n_clean < 2 * N_CLASSES:
        raise ConfigError(f"n={n} leaves {n_clean} clean samples after the planted ones; lower the rates")

    source_digit = _rng(seed, 0).integers(len(images), size=n_clean)
    true_label = targets[source_digit]

    # Stratified, seeded test split of the clean rows (each class keeps at least one train row).
    rng = _rng(seed, 1)
    test = np.zeros(n_clean, dtype=bool)
    for c in range(N_CLASSES):
        members = np.flatnonzero(true_label == c)
        k = min(_count(config.test_fraction, len(members)), max(len(members) - 1, 0))
        test[rng.choice(members, size=k, replace=False)] = True
    pool = np.flatnonzero(~test)

    # Symmetric label flips on clean train rows: a uniformly random other class.
    rng = _rng(seed, 2)
    flipped = np.sort(rng.choice(pool, size=min(_count(config.label_noise_rate, n), len(pool)), replace=False))
    given_label = true_label.copy()
    given_label[flipped] = (true_label[flipped] + rng.integers(1, N_CLASSES, size=len(flipped))) % N_CLASSES

    # Added rows; copies come from distinct unflipped train rows while there are enough.
    rng = _rng(seed, 3)
    near_kinds = _kinds_for(n_near, NEAR_KINDS, rng)
    outlier_kinds = _kinds_for(n_out, OUTLIER_KINDS, rng)
    unflipped = np.setdiff1d(pool, flipped, assume_unique=True)
    n_sources = n_dup + n_near + outlier_kinds.count("inverted")
    if n_sources and not len(unflipped):
        raise ConfigError("no unflipped train sample left to copy; lower label_noise_rate")
    sources = rng.choice(unflipped, size=n_sources, replace=n_sources > len(unflipped)) if n_sources else \
        np.zeros(0, dtype=np.int64)
    src = iter(sources.tolist())
    rows = [(f"dup/{j:07d}", "exact_duplicate", "copy", next(src)) for j in range(n_dup)]
    rows += [(f"near/{j:07d}", "near_duplicate", k, next(src)) for j, k in enumerate(near_kinds)]
    rows += [(f"outlier/{j:07d}", "outlier", k, next(src) if k == "inverted" else -1)
             for j, k in enumerate(outlier_kinds)]
    added = pd.DataFrame(rows, columns=["id", "defect", "kind", "source"])

    # Added rows at random positions (in random order, so no kind clusters early); clean rows fill
    # the remaining positions in their own order.
    pos = _rng(seed, 4).choice(n, size=len(added), replace=False)
    added["pos"] = pos
    is_added = np.zeros(n, dtype=bool)
    is_added[pos] = True
    return _Plan(n=n, source_digit=source_digit, true_label=true_label, given_label=given_label, test=test,
                 flipped=flipped, clean_pos=np.flatnonzero(~is_added), added=added)


def _upsample_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) bilinear interpolation weights from a coarse grid spanning the image."""
    at = np.linspace(0.0, n_in - 1.0, n_out)
    lo = np.clip(np.floor(at).astype(np.int64), 0, n_in - 2)
    frac = at - lo
    out = np.zeros((n_out, n_in))
    out[np.arange(n_out), lo] = 1.0 - frac
    out[np.arange(n_out), lo + 1] += frac
    return out


def clean_variants(digits: np.ndarray, rng: np.random.Generator, shift: float = 0.3, elastic: float = 0.3,
                   pixel_noise: float = 0.1) -> np.ndarray:
    """(B, H, W) images in [0, 1] → (B, H, W) float32 variants: a sub-pixel shift and an elastic
    displacement field, resampled bilinearly at once (zero outside), plus pixel noise, clipped."""
    from scipy.ndimage import map_coordinates

    b, h, w = digits.shape
    offset = rng.uniform(-shift, shift, size=(b, 2))
    coarse = rng.normal(0.0, elastic, size=(b, 2, 3, 3))
    field = np.einsum("ij,bcjk,lk->bcil", _upsample_matrix(h, 3), coarse, _upsample_matrix(w, 3))
    yy, xx = np.mgrid[0:h, 0:w]
    coords = np.empty((3, b, h, w))
    coords[0] = np.arange(b)[:, None, None]  # whole numbers: no mixing across samples
    coords[1] = yy + offset[:, 0, None, None] + field[:, 0]
    coords[2] = xx + offset[:, 1, None, None] + field[:, 1]
    out = map_coordinates(digits.astype(np.float64), coords, order=1, mode="grid-constant", cval=0.0)
    out += rng.normal(0.0, pixel_noise, size=out.shape)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def stained_foreign(shape: tuple[int, int, int], rng: np.random.Generator, pixel_noise: float) -> np.ndarray:
    """A foreign outlier: one of defects.py's geometric patterns (block, disk, checkerboard, ramp)
    blended half and half with a smooth random stain (a 4x4 grid of U(0, 1) upsampled bilinearly),
    plus the sensor noise every sample has, clipped.

    Why not the bare patterns: they are low-dimensional families (a block has four integer
    parameters) that collapse onto each other in the steps' PCA space once there are thousands of
    them. Of 3,333 bare patterns (1M samples' share) 92% had another within near_deduplicated's
    radius, so they were near duplicates of each other and, being dense, no outliers by kNN distance:
    both steps' scores would have depended on n. With the stain none of 3,333 had one."""
    h, w, c = shape
    stain = _upsample_matrix(h, 4) @ rng.uniform(0.0, 1.0, size=(4, 4)) @ _upsample_matrix(w, 4).T
    img = 0.5 * _foreign(shape, rng) + 0.5 * stain[..., None]
    return np.clip(img + rng.normal(0.0, pixel_noise, size=shape), 0.0, 1.0).astype(np.float32)


def _clean_ids(index: np.ndarray) -> np.ndarray:
    return np.array([f"s{b:07d}" for b in index.tolist()], dtype=ID_DTYPE)


def _write(plan: _Plan, config: ScaleConfig, seed: int, folder: Path) -> None:
    from numpy.lib.format import open_memmap

    digit_images, _ = _digits()
    n, shape = plan.n, (8, 8, 1)
    images = open_memmap(folder / "images.npy", mode="w+", dtype=np.float32, shape=(n, *shape))
    ids = open_memmap(folder / "ids.npy", mode="w+", dtype=ID_DTYPE, shape=(n,))
    labels = np.empty(n, dtype=np.int64)
    split = np.full(n, "train", dtype=SPLIT_DTYPE)

    n_clean = len(plan.source_digit)
    for block, start in enumerate(range(0, n_clean, BLOCK)):
        stop = min(start + BLOCK, n_clean)
        pos = plan.clean_pos[start:stop]
        rng = _rng(seed, 10, block)
        images[pos] = clean_variants(digit_images[plan.source_digit[start:stop]], rng, config.shift,
                                     config.elastic, config.pixel_noise)[..., None]
        ids[pos] = _clean_ids(np.arange(start, stop))
    labels[plan.clean_pos] = plan.given_label
    split[plan.clean_pos[plan.test]] = "test"

    # Planted rows, from sources already written (sources are clean rows, never added ones).
    added = plan.added
    src = added["source"].to_numpy()
    has_src = src >= 0
    src_images = np.zeros((len(added), *shape), dtype=np.float32)
    src_images[has_src] = images[plan.clean_pos[src[has_src]]]
    defect = DefectConfig(near_noise_std=config.near_noise_std, near_brightness_change=config.near_brightness_change)
    rng = _rng(seed, 5)
    out = np.empty_like(src_images)
    given = np.empty(len(added), dtype=np.int64)
    true = np.full(len(added), -1, dtype=np.int64)
    for i, (d, kind, s) in enumerate(zip(added["defect"], added["kind"], src, strict=True)):
        if s >= 0:
            true[i] = given[i] = plan.true_label[s]  # sources are unflipped: given = true
        if d == "exact_duplicate":
            out[i] = src_images[i]
        elif d == "near_duplicate":
            out[i] = _near_duplicate(src_images[i], kind, defect, rng)
        elif kind == "inverted":
            out[i] = 1.0 - src_images[i]
        else:
            out[i] = rng.random(shape, dtype=np.float32) if kind == "noise" else \
                stained_foreign(shape, rng, config.pixel_noise)
            given[i] = rng.integers(N_CLASSES)
    apos = added["pos"].to_numpy()
    order = np.argsort(apos)  # ascending positions: a sequential pass over the memory map
    images[apos[order]] = out[order]
    ids[apos] = added["id"].to_numpy(dtype=ID_DTYPE)
    labels[apos] = given
    images.flush()
    ids.flush()
    del images, ids
    np.save(folder / "labels.npy", labels)
    np.save(folder / "split.npy", split)
    (folder / "class_names.json").write_text(json.dumps([str(c) for c in range(N_CLASSES)]))

    flips = pd.DataFrame({"id": _clean_ids(plan.flipped), "defect": "label_flip", "kind": "symmetric",
                          "source_id": "", "true_label": plan.true_label[plan.flipped],
                          "given_label": plan.given_label[plan.flipped]})
    planted = pd.DataFrame({"id": added["id"], "defect": added["defect"], "kind": added["kind"],
                            "source_id": np.where(has_src, _clean_ids(np.where(has_src, src, 0)), ""),
                            "true_label": true, "given_label": given})
    pd.concat([flips, planted], ignore_index=True)[TRUTH_COLUMNS].to_csv(folder / "truth.csv", index=False)
