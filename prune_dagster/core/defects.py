"""Inject known defects into a clean Dataset and return the ground truth, for benchmarks and tests.

Every defect is seeded and configurable, so a pruning step can be scored by precision / recall
against the exact list of what was broken. Rates are fractions of the samples defects are injected
into (after the optional imbalance subsampling). Each sample carries at most one defect: duplicates,
near duplicates and inverted outliers are made only from samples whose label was not flipped, so a
duplicate's label is its source's true label and scoring one defect never depends on another.

Ground truth columns: id, defect, kind, source_id, true_label, given_label.

==================  ===================  ==========================================================
defect              kind                 what it is
==================  ===================  ==========================================================
exact_duplicate     copy                 new id "dup/…": byte-identical image, same label as source
label_conflict      relabelled_copy      new id "conflict/…": identical image, a different label
near_duplicate      pixel_noise          new id "near/…": source + N(0, near_noise_std), clipped
near_duplicate      shift                source rolled by one pixel along height or width
near_duplicate      brightness           source × gain, gain = 1 ± U(½, 1)·near_brightness_change,
                                         clipped
label_flip          symmetric            existing id keeps its image; label → a uniformly random
                                         other class
label_flip          class_conditional    label → its partner in `label_noise_pairs`
outlier             noise                new id "outlier/…": uniform random pixels, random label,
                                         true_label −1
outlier             inverted             1 − source image, source's label (true_label = source's)
outlier             foreign              random geometric pattern (block, disk, checkerboard,
                                         ramp): not a class at all, random label, true_label −1
==================  ===================  ==========================================================
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl

import numpy as np
import pandas as pd

from prune_dagster.core.dataset import TRAIN, Dataset
from prune_dagster.core.errors import ConfigError, DatasetError

NEAR_KINDS = ("pixel_noise", "shift", "brightness")
OUTLIER_KINDS = ("noise", "inverted", "foreign")
LABEL_NOISE_KINDS = ("symmetric", "class_conditional")
TRUTH_COLUMNS = ["id", "defect", "kind", "source_id", "true_label", "given_label"]

# Class-conditional flips for digits, after the usual visual confusions (Patrini et al. 2017 use
# 2→7, 3→8, 5↔6, 7→1 on MNIST); extended so that every digit has a partner and the rate is a
# fraction of the whole set. Keys and values are class indices; a class with no partner (another
# dataset) flips to (class + 1) mod n_classes, and on a dataset with fewer classes the default pairs
# that name a missing class are dropped (user-given ones raise instead).
DIGIT_CONFUSIONS: tuple[tuple[int, int], ...] = (
    (0, 6), (1, 7), (2, 7), (3, 8), (4, 9), (5, 6), (6, 5), (7, 1), (8, 3), (9, 4),
)

# Extra keys a dirty-digits spec accepts besides the DefectConfig fields: the clean test split.
SPLIT_KEYS = {"test_fraction": 0.2, "split_seed": 0}


@dataclass(frozen=True)
class DefectConfig:
    """Which defects to inject and how many. Defaults suit a benchmark on the digits.

    imbalance_ratio: 0 (or 1) keeps the class histogram; r > 1 subsamples classes to an exponential
    long tail where class index 0 is the largest and the last class is r times smaller.
    """

    exact_duplicate_rate: float = 0.03
    conflicting_duplicate_rate: float = 0.005
    near_duplicate_rate: float = 0.03
    near_duplicate_kinds: tuple[str, ...] = NEAR_KINDS
    near_noise_std: float = 0.03
    near_brightness_change: float = 0.2
    label_noise_rate: float = 0.2
    label_noise_kind: str = "symmetric"
    label_noise_pairs: tuple[tuple[int, int], ...] = DIGIT_CONFUSIONS
    outlier_rate: float = 0.02
    outlier_kinds: tuple[str, ...] = OUTLIER_KINDS
    imbalance_ratio: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("exact_duplicate_rate", "conflicting_duplicate_rate", "near_duplicate_rate",
                     "label_noise_rate", "outlier_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"DefectConfig.{name} must be in [0, 1], got {value}")
        _check_kinds("near_duplicate_kinds", self.near_duplicate_kinds, NEAR_KINDS, self.near_duplicate_rate)
        _check_kinds("outlier_kinds", self.outlier_kinds, OUTLIER_KINDS, self.outlier_rate)
        if self.label_noise_kind not in LABEL_NOISE_KINDS:
            raise ConfigError(
                f"DefectConfig.label_noise_kind must be one of {list(LABEL_NOISE_KINDS)}, "
                f"got {self.label_noise_kind!r}"
            )
        if any(len(pair) != 2 for pair in self.label_noise_pairs):
            raise ConfigError(
                f"DefectConfig.label_noise_pairs must be (source, target) pairs, got {self.label_noise_pairs}"
            )
        sources = [a for a, _ in self.label_noise_pairs]
        if len(set(sources)) != len(sources):
            raise ConfigError(f"DefectConfig.label_noise_pairs: a class appears twice as source: {sources}")
        for a, b in self.label_noise_pairs:
            if a == b or a < 0 or b < 0:
                raise ConfigError(
                    f"DefectConfig.label_noise_pairs: ({a}, {b}) must map a class index to another one"
                )
        if self.near_noise_std <= 0:
            raise ConfigError(f"DefectConfig.near_noise_std must be > 0, got {self.near_noise_std}")
        if not 0.0 < self.near_brightness_change < 1.0:
            raise ConfigError(
                f"DefectConfig.near_brightness_change must be in (0, 1), got {self.near_brightness_change}"
            )
        if self.imbalance_ratio != 0 and self.imbalance_ratio < 1:
            raise ConfigError(
                f"DefectConfig.imbalance_ratio must be 0 (none) or >= 1, got {self.imbalance_ratio}"
            )


def _check_kinds(name: str, kinds: tuple[str, ...], valid: tuple[str, ...], rate: float) -> None:
    bad = [k for k in kinds if k not in valid]
    if bad:
        raise ConfigError(f"DefectConfig.{name}: unknown kind(s) {bad}; valid: {list(valid)}")
    if rate > 0 and not kinds:
        raise ConfigError(f"DefectConfig.{name} is empty but its rate is {rate}")


# ------------------------------------------------------------------------------------------------
# Public entry points


def inject_defects(clean: Dataset, config: DefectConfig) -> tuple[Dataset, pd.DataFrame]:
    """Defects injected into the whole dataset; returns (dirty dataset, ground truth).

    Flipped samples keep their id; added samples get new ids and are interleaved at random
    positions, while the originals keep their relative order. If `clean` already has a split, an
    added sample takes its source's split (sourceless outliers: "train").
    """
    return _inject(clean, config, np.ones(len(clean), dtype=bool))


def inject_defects_train_only(
    clean: Dataset, config: DefectConfig, test_fraction: float = 0.2, split_seed: int = 0
) -> tuple[Dataset, pd.DataFrame]:
    """Split `clean` (stratified, seeded) and inject defects into its train part only.

    The test split stays byte-identical to the clean data, so a benchmark measures accuracy on
    clean labels; every added sample is "train". The returned dataset carries the split.
    """
    split_clean = clean.with_split(test_fraction, split_seed)
    return _inject(split_clean, config, split_clean.split == TRAIN)


def parse_dirty_spec(spec: str) -> tuple[DefectConfig, float, int]:
    """"dirty-digits?label_noise_rate=0.4&seed=1" → (DefectConfig, test_fraction, split_seed).

    Values are converted to the field's type; tuples are comma-separated ("shift,brightness") and
    label_noise_pairs are "7:1,3:8". An unknown key raises ConfigError listing the valid keys.
    """
    base, _, query = spec.strip().partition("?")
    if base != "dirty-digits":
        raise ConfigError(f"dataset spec {spec!r}: expected 'dirty-digits' or 'dirty-digits?key=value&…'")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ConfigError(f"dataset spec {spec!r}: cannot parse the query ({exc})") from exc
    defaults = {f.name: f.default for f in dataclasses.fields(DefectConfig)} | SPLIT_KEYS
    values: dict[str, object] = {}
    for key, raw in pairs:
        if key not in defaults:
            raise ConfigError(
                f"dataset spec {spec!r}: unknown key {key!r}; valid keys: {sorted(defaults)}"
            )
        if key in values:
            raise ConfigError(f"dataset spec {spec!r}: key {key!r} given more than once")
        values[key] = _convert(key, raw, defaults[key], spec)
    test_fraction = float(values.pop("test_fraction", SPLIT_KEYS["test_fraction"]))
    split_seed = int(values.pop("split_seed", SPLIT_KEYS["split_seed"]))
    return DefectConfig(**values), test_fraction, split_seed  # type: ignore[arg-type]


def load_dirty_digits(spec: str = "dirty-digits") -> Dataset:
    """The digits with seeded defects in the train split; the dataset's source is the spec."""
    return _dirty_digits(spec)[0]


def dirty_digits_truth(spec: str = "dirty-digits") -> pd.DataFrame:
    """Ground truth for `load_dirty_digits(spec)`: the same spec always gives the same data."""
    return _dirty_digits(spec)[1]


# ------------------------------------------------------------------------------------------------
# Implementation


def _dirty_digits(spec: str) -> tuple[Dataset, pd.DataFrame]:
    from prune_dagster.core.sources import load_digits  # lazy: sources imports this module lazily too

    config, test_fraction, split_seed = parse_dirty_spec(spec)
    try:
        dirty, truth = inject_defects_train_only(load_digits(), config, test_fraction, split_seed)
    except DatasetError as exc:  # e.g. test_fraction outside (0, 1): a spec error to the user
        raise ConfigError(f"dataset spec {spec!r}: {exc}") from exc
    return replace(dirty, source=spec.strip()), truth


def _convert(key: str, raw: str, default: object, spec: str) -> object:
    try:
        if key == "label_noise_pairs":
            if not raw:
                return ()
            return tuple(tuple(int(x) for x in item.split(":", 1)) for item in raw.split(","))
        if isinstance(default, tuple):
            return tuple(s.strip() for s in raw.split(",") if s.strip())
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        return raw
    except ValueError as exc:
        expected = "list of a:b pairs" if key == "label_noise_pairs" else type(default).__name__
        raise ConfigError(f"dataset spec {spec!r}: {key}={raw!r} is not a valid {expected}") from exc


def _count(rate: float, n: int) -> int:
    return int(np.floor(rate * n + 0.5))  # round half up: Python's round() would be banker's


def _rng(seed: int, stage: int) -> np.random.Generator:
    # One stream per stage: changing one rate leaves the other defects' choices unchanged.
    return np.random.default_rng([seed, stage])


def _kinds_for(n: int, kinds: tuple[str, ...], rng: np.random.Generator) -> list[str]:
    # Round-robin then shuffled: every kind appears as soon as n >= len(kinds).
    return [str(k) for k in rng.permutation(np.resize(np.asarray(kinds, dtype=object), n))] if n else []


def _fresh_ids(prefix: str, n: int, taken: set[str]) -> list[str]:
    while any(i.startswith(prefix + "/") for i in taken):  # never clash with the source's own ids
        prefix += "_"
    return [f"{prefix}/{i:05d}" for i in range(n)]


def long_tail_counts(counts: np.ndarray, ratio: float) -> np.ndarray:
    """Per-class targets ≤ counts decaying as ratio^(−rank/(K−1)) over present classes, in index order.

    The head is as large as availability allows, so the tail/head ratio is `ratio` up to rounding.
    """
    counts = np.asarray(counts, dtype=np.int64)
    present = np.flatnonzero(counts > 0)
    targets = counts.copy()
    if ratio <= 1 or len(present) < 2:
        return targets
    decay = ratio ** (-np.arange(len(present)) / (len(present) - 1))
    base = float(np.min(counts[present] / decay))
    targets[present] = np.clip(np.floor(base * decay + 0.5).astype(np.int64), 1, counts[present])
    return targets


def _subsample_long_tail(labels: np.ndarray, eligible: np.ndarray, n_classes: int, ratio: float,
                         rng: np.random.Generator) -> np.ndarray:
    """Keep-mask: eligible rows subsampled per class to a long tail; other rows always kept."""
    keep = np.ones(len(labels), dtype=bool)
    counts = np.bincount(labels[eligible], minlength=n_classes)
    targets = long_tail_counts(counts, ratio)
    for c in range(n_classes):
        members = np.flatnonzero(eligible & (labels == c))
        drop = len(members) - targets[c]
        if drop > 0:
            keep[rng.choice(members, size=drop, replace=False)] = False
    return keep


def _near_duplicate(src: np.ndarray, kind: str, config: DefectConfig, rng: np.random.Generator) -> np.ndarray:
    if kind == "pixel_noise":
        return np.clip(src + rng.normal(0.0, config.near_noise_std, src.shape), 0.0, 1.0).astype(np.float32)
    if kind == "shift":
        # Try the four one-pixel rolls from a random start; take the first that changes the image.
        options = [(axis, step) for axis in (0, 1) for step in (1, -1)]
        start = int(rng.integers(len(options)))
        for j in range(len(options)):
            axis, step = options[(start + j) % len(options)]
            out = np.roll(src, step, axis=axis)
            if not np.array_equal(out, src):
                return out
        return out  # a constant image: every roll is identical to it
    sign = 1.0 if rng.random() < 0.5 else -1.0
    gain = 1.0 + sign * config.near_brightness_change * rng.uniform(0.5, 1.0)
    return np.clip(src * gain, 0.0, 1.0).astype(np.float32)


def _foreign(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A random geometric pattern from outside any class: block, disk, checkerboard or ramp."""
    h, w, c = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pattern = int(rng.integers(4))
    level = rng.uniform(0.6, 1.0)
    if pattern == 0:  # filled block covering at least half of each side
        bh, bw = int(rng.integers((h + 1) // 2, h + 1)), int(rng.integers((w + 1) // 2, w + 1))
        y0, x0 = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        img = ((yy >= y0) & (yy < y0 + bh) & (xx >= x0) & (xx < x0 + bw)) * level
    elif pattern == 1:  # filled disk
        r = rng.uniform(0.3, 0.5) * min(h, w)
        cy, cx = rng.uniform(r - 0.5, h - r + 0.5), rng.uniform(r - 0.5, w - r + 0.5)
        img = (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r) * level
    elif pattern == 2:  # checkerboard
        cell = int(rng.integers(1, max(2, min(h, w) // 4 + 1)))
        img = (((yy // cell) + (xx // cell) + int(rng.integers(2))) % 2) * level
    else:  # linear ramp in a random direction
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * xx / max(w - 1, 1) + np.sin(angle) * yy / max(h - 1, 1)
        img = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6) * level
    return np.repeat(img.astype(np.float32)[..., None], c, axis=2)


def _other_label(y: int, n_classes: int, rng: np.random.Generator) -> int:
    return int((y + rng.integers(1, n_classes)) % n_classes)


def _inject(clean: Dataset, config: DefectConfig, eligible: np.ndarray) -> tuple[Dataset, pd.DataFrame]:
    k = clean.n_classes
    if k < 2 and (config.label_noise_rate > 0 or config.conflicting_duplicate_rate > 0):
        raise DatasetError(f"{clean.source}: label defects need at least two classes, got {k}")
    has_split = len(clean.split) == len(clean)

    # 1. Imbalance first: the other rates then apply to the long-tailed set.
    keep = np.ones(len(clean), dtype=bool)
    if config.imbalance_ratio > 1:
        keep = _subsample_long_tail(clean.labels, eligible, k, config.imbalance_ratio, _rng(config.seed, 0))
    ids = clean.ids[keep]
    images = clean.images[keep]
    true_labels = clean.labels[keep]
    labels = true_labels.copy()
    split = clean.split[keep] if has_split else clean.split
    pool = np.flatnonzero(eligible[keep])
    n = len(pool)
    rows: list[tuple[str, str, str, str, int, int]] = []

    # 2. Label flips on existing samples (they keep their id).
    rng = _rng(config.seed, 1)
    flipped = np.sort(rng.choice(pool, size=min(_count(config.label_noise_rate, n), n), replace=False))
    partner = dict(config.label_noise_pairs)
    out_of_range = {a: b for a, b in partner.items() if a >= k or b >= k}
    if out_of_range and config.label_noise_kind == "class_conditional":
        if config.label_noise_pairs != DIGIT_CONFUSIONS:
            raise ConfigError(
                f"DefectConfig.label_noise_pairs {sorted(out_of_range.items())} name classes beyond the "
                f"{k} of {clean.source}"
            )
        # The digit defaults on a smaller dataset: drop the pairs that do not fit, fall back to +1.
        partner = {a: b for a, b in partner.items() if a not in out_of_range}
    for i in flipped:
        y = int(true_labels[i])
        if config.label_noise_kind == "symmetric":
            new = _other_label(y, k, rng)
        else:
            new = partner.get(y, (y + 1) % k)
        labels[i] = new
        rows.append((str(ids[i]), "label_flip", config.label_noise_kind, "", y, new))

    # 3. Added samples, made only from unflipped samples so each sample carries one defect.
    rng = _rng(config.seed, 2)
    n_dup = _count(config.exact_duplicate_rate, n)
    n_conflict = _count(config.conflicting_duplicate_rate, n)
    near_kinds = _kinds_for(_count(config.near_duplicate_rate, n), config.near_duplicate_kinds, rng)
    outlier_kinds = _kinds_for(_count(config.outlier_rate, n), config.outlier_kinds, rng)
    n_sources = n_dup + n_conflict + len(near_kinds) + outlier_kinds.count("inverted")
    unflipped = np.setdiff1d(pool, flipped)
    if n_sources and not len(unflipped):
        raise DatasetError(f"{clean.source}: no unflipped sample left to duplicate; lower label_noise_rate")
    # Distinct sources while there are enough: one original per duplicate set keeps scoring simple.
    sources = iter(rng.choice(unflipped, size=n_sources, replace=n_sources > len(unflipped))
                   if n_sources else [])

    taken = set(map(str, clean.ids))
    add_images: list[np.ndarray] = []
    add_labels: list[int] = []
    add_ids: list[str] = []
    add_split: list[str] = []

    def add(new_id: str, image: np.ndarray, given: int, defect: str, kind: str, src: int | None,
            true: int) -> None:
        add_ids.append(new_id)
        add_images.append(image.astype(np.float32, copy=False))
        add_labels.append(given)
        add_split.append(str(split[src]) if has_split and src is not None else TRAIN)
        rows.append((new_id, defect, kind, "" if src is None else str(ids[src]), true, given))

    for new_id in _fresh_ids("dup", n_dup, taken):
        s = int(next(sources))
        add(new_id, images[s].copy(), int(labels[s]), "exact_duplicate", "copy", s, int(true_labels[s]))
    for new_id in _fresh_ids("conflict", n_conflict, taken):
        s = int(next(sources))
        y = int(true_labels[s])
        add(new_id, images[s].copy(), _other_label(y, k, rng), "label_conflict", "relabelled_copy", s, y)
    for new_id, kind in zip(_fresh_ids("near", len(near_kinds), taken), near_kinds, strict=True):
        s = int(next(sources))
        y = int(true_labels[s])
        add(new_id, _near_duplicate(images[s], kind, config, rng), y, "near_duplicate", kind, s, y)
    shape = clean.image_shape
    for new_id, kind in zip(_fresh_ids("outlier", len(outlier_kinds), taken), outlier_kinds, strict=True):
        if kind == "inverted":
            s = int(next(sources))
            y = int(true_labels[s])
            add(new_id, 1.0 - images[s], y, "outlier", kind, s, y)
        else:
            img = rng.random(shape, dtype=np.float32) if kind == "noise" else _foreign(shape, rng)
            add(new_id, img, int(rng.integers(k)), "outlier", kind, None, -1)

    # 4. Interleave added rows at random positions; originals keep their relative order.
    m = len(ids) + len(add_ids)
    is_added = np.zeros(m, dtype=bool)
    is_added[_rng(config.seed, 3).choice(m, size=len(add_ids), replace=False)] = True
    out_ids = np.empty(m, dtype=object)
    out_ids[~is_added], out_ids[is_added] = ids, np.array(add_ids, dtype=object)
    out_images = np.empty((m, *shape), dtype=np.float32)
    out_images[~is_added] = images
    if add_images:
        out_images[is_added] = np.stack(add_images)
    out_labels = np.empty(m, dtype=np.int64)
    out_labels[~is_added], out_labels[is_added] = labels, np.array(add_labels, dtype=np.int64)
    out_split = clean.split
    if has_split:
        out_split = np.empty(m, dtype=object)
        out_split[~is_added], out_split[is_added] = split, np.array(add_split, dtype=object)
    kept_ids = set(map(str, ids))
    dirty = Dataset(
        ids=out_ids, images=out_images, labels=out_labels, class_names=clean.class_names,
        source=f"{clean.source}+defects(seed={config.seed})", split=out_split,
        load_errors={i: e for i, e in clean.load_errors.items() if i in kept_ids},
    )
    truth = pd.DataFrame(rows, columns=TRUTH_COLUMNS).astype(
        {"id": object, "defect": object, "kind": object, "source_id": object,
         "true_label": np.int64, "given_label": np.int64}
    )
    return dirty, truth
