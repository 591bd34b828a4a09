"""Image-property checks: dark, light, low-contrast, blurry, low-information, odd-size, odd-aspect and
grey-in-colour images, each a robust outlier on one simple per-image statistic.

CleanVision (cleanlab) checks the same families with fixed thresholds on normalised scores (dark: the
99th-percentile brightness below 0.32; blurry: a squashed edge-strength score below 0.29; grayscale:
the image's PIL mode is "L"). Here every threshold is relative to the data set itself, as the other
cleaning steps do: a sample is flagged when its statistic lies beyond median ± k x unit, the unit
being max(1.4826 x MAD, a floor), on the side where a defect lies, so one k serves handwritten digits
(black background, p1 = 0) and photographs alike.

=====================  ===================================================  ======  =============
check (ledger reason)  statistic (luma = 0.299 R + 0.587 G + 0.114 B)        side    unit floor
=====================  ===================================================  ======  =============
dark                   log(99th percentile of luma + 1/255): brightest px   low     0.05
light                  1st percentile of luma: the darkest pixels            high    0.06
low_contrast           log(standard deviation of luma + 1/255)               low     0.05
blurry                 log(var(Laplacian of luma) / var(luma))               low     0.05
low_information        entropy of the 256-bin luma histogram, bits (*)       low     0.05 bits
odd_size               log sqrt(height x width) of the original file         both    0.1
odd_aspect             |log(width / height)| of the original file: elongation both    0.1
grayscale_in_colour    log(mean over pixels of max - min channel + 1/255)    low     0.05
=====================  ===================================================  ======  =============

Why percentiles and not the mean for dark / light: the mean of a digit depends on its stroke length (a
"1" is half as bright as an "8"), so an underexposed "8" stays inside the clean range of the mean; its
brightest pixels do not. Why the Laplacian is divided by the image's variance: var(Laplacian) scales
with contrast², so every dark or faded image would also read as blurry; the ratio measures only how
much of the variation is fine detail. Why logarithms: underexposure, fading and desaturation scale a
statistic, so on a log scale they shift it by the same amount whatever the image, and the spread of
clean images (a dim photo vs a bright one) is measured in ratios; a grey image (spread 0) lands far
below any colour photo instead of just below the dullest. The floors keep a statistic that is (almost)
constant on clean data (p1 of digits is 0; all originals 640 x 480) from turning rounding noise into flags.
The floor of `light` is larger (k = 5: a lift of 0.3 of the range): haze, fog or a bright backdrop lift
a photograph's darkest pixels by that much (crops of a hazy sky reach p1 = 0.3-0.9), a wash-out more.
(*) Entropy is capped at 8 bits and photographs crowd under the cap, so its upper half is squeezed and
the usual MAD understates how far plainer clean images reach below; its unit is the MAD of the values
at or below the median. (The same rule on brightness or colourfulness, whose lower halves mix the
modes of different scenes, cost recall: dark 0.70, grey 0.00 on the colour set; so only entropy.)
Aspect is judged without orientation (|log w/h|, as CleanVision's min(w/h, h/w)): a set of 3:2
landscapes and 2:3 portraits is ordinary, and on log(w/h) the minority orientation would be flagged.

Measured (benchmarks/properties.py, 40 planted per kind; results/properties.json), k = 5 (default):
real MNIST (10,000): no clean image flagged, recall 1.00 on every kind. Upsampled digits (1,797): 1
clean flagged (0.06%), recall 1.00 except blurry 0.93. Colour crops of three photos (2,000): recall
1.00 except blurry 0.97, and 2.05% of clean crops flagged (was 5.0% before the three rules above, odd
aspect recall 0.47 -> 1.00): crops of shaded foliage (dark and flat), hazy sky (light) and
out-of-focus leaves (blurry); they overlap the planted kinds on the statistic itself: flagging at most
0.5% of clean crops, the best threshold on p99 brightness finds 0.82 of the planted dark images, on
p1 0.90 of the light ones, so no k or unit reaches the 0.5% target there. CleanVision: 17.8%.

Sizes: the loader resizes every image to one shape, so `odd_size` / `odd_aspect` read the original
(height, width) the source recorded (`Dataset.original_sizes`, kept by an image-folder source and passed
by `properties_checked`); array sources record none, and then the two checks are skipped.

A sample failing several checks gets one ledger row, for the check it fails by the most robust units;
the metadata counts every check's flags (a blank image is usually dark, flat and uninformative at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.infra.parallel import Mapper, row_blocks, serial_map
from prune_dagster.core.ledger import StepResult, removed_frame
from prune_dagster.core.params import Params
from prune_dagster.core.steps.base import StepInputs
from prune_dagster.core.steps.frozen import NewBatch


@dataclass(frozen=True)
class Check:
    """One flag: the statistic it reads, the side where the defect lies, the smallest unit of spread,
    and whether the spread is measured on the defect's side of the median only (`lower_spread`)."""

    reason: str
    statistic: str
    side: Literal["low", "high", "both"]
    floor: float
    lower_spread: bool = False


GREY_LEVEL = 1.0 / 255.0
CHECKS: tuple[Check, ...] = (
    Check("dark", "bright_end", "low", 0.05),
    Check("light", "dark_end", "high", 0.06),
    Check("low_contrast", "contrast", "low", 0.05),
    Check("blurry", "sharpness", "low", 0.05),
    Check("low_information", "entropy", "low", 0.05, lower_spread=True),
    Check("odd_size", "log_size", "both", 0.1),
    Check("odd_aspect", "elongation", "both", 0.1),
    Check("grayscale_in_colour", "colourfulness", "low", 0.05),
)
REASONS = tuple(c.reason for c in CHECKS)
STATISTICS = ("brightness", "bright_end", "dark_end", "contrast", "sharpness", "entropy", "colourfulness",
              "log_size", "elongation")
DESCRIPTION = ("Removes images that are robust outliers (median ± k·MAD) on brightness, contrast, sharpness, "
               "entropy, colourfulness, or the original size or aspect ratio of the file; the ledger names the "
               "check and its robust z. Off by default (see PropertyStepParams). Size and aspect are judged where "
               "the source recorded each file's size before resizing (an image folder); array sources skip them.")
REMOVES = "dark, light, low-contrast, blurry, low-information, odd-size or odd-aspect images (off by default)"
KEY_SETTINGS = ("k",)
SCORE_MEANING = ("robust z of the statistic named by the reason: (value - median) / max(1.4826 x MAD, floor) "
                 "over the step's input; negative below the median (dark, blurry, ...)")
# Rows per block: the percentile sort holds a float64 copy of the block (4096 x 64 x 64 px = 128 MB).
PROPERTY_BLOCK = 4096
_HIST_BINS = 256
_LUMA = np.array([0.299, 0.587, 0.114])


class ImagePropertyParams(Params):
    """Image-property checks: images that are robust outliers on brightness, contrast, blur, information,
    original size or aspect ratio, or grey in a colour data set."""

    enabled: bool = Field(default=True, description="false: the step passes its input through unchanged")
    k: float = Field(default=5.0, gt=0.0, le=100.0,
                     description="flag a statistic beyond median ± k x max(1.4826 x MAD, floor), on the side "
                                 "where the defect lies")
    skip: list[str] = Field(default=[], description="checks not to run, by ledger reason: "
                                                              + ", ".join(REASONS))

    @field_validator("skip")
    @classmethod
    def _known_checks(cls, skip: list[str]) -> list[str]:
        unknown = [s for s in skip if s not in REASONS]
        if unknown:
            raise ValueError(f"skip names unknown check(s) {unknown}; the checks are {', '.join(REASONS)}")
        return skip

    @property
    def checks(self) -> tuple[str, ...]:
        """The checks that run, in the module table's order."""
        return tuple(r for r in REASONS if r not in self.skip)


class PropertyStepParams(ImagePropertyParams):
    """The pipeline step `properties_checked`: the checks above, off unless asked for.

    Off by default because with the defaults it removes a clean sample of sklearn digits (1 of the
    1,438 training images, `digits/01626`, low_information at z = -6.1), and the step is on by
    default only where it removes nothing on clean data. Turn it on for photos and scans."""

    enabled: bool = Field(default=False, description="true: run the checks (off by default: with k = 5 it "
                                                     "flags 1 of 1,438 clean sklearn digits)")


PARAMS = PropertyStepParams


def _luma(images: np.ndarray) -> np.ndarray:
    """(B, H, W, C) in [0, 1] → (B, H, W) float64 luma; one channel is its own luma."""
    x = np.asarray(images, dtype=np.float64)
    if x.shape[-1] == 3:
        return x @ _LUMA
    return x.mean(axis=-1)


def _entropy(luma: np.ndarray) -> np.ndarray:
    """Shannon entropy (bits) of each image's 256-bin histogram of luma (like PIL's Image.entropy)."""
    b = len(luma)
    bins = np.clip((luma.reshape(b, -1) * _HIST_BINS).astype(np.int64), 0, _HIST_BINS - 1)
    counts = np.bincount((bins + _HIST_BINS * np.arange(b)[:, None]).ravel(),
                         minlength=b * _HIST_BINS).reshape(b, _HIST_BINS)
    p = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)


def _sharpness(luma: np.ndarray) -> np.ndarray:
    """log(var(4-neighbour Laplacian) / var(luma)) over the interior pixels; a flat image scores -inf-like low."""
    lap = (luma[:, :-2, 1:-1] + luma[:, 2:, 1:-1] + luma[:, 1:-1, :-2] + luma[:, 1:-1, 2:]
           - 4.0 * luma[:, 1:-1, 1:-1])
    var_lap = lap.reshape(len(luma), -1).var(axis=1)
    var = luma.reshape(len(luma), -1).var(axis=1)
    return np.log((var_lap + 1e-12) / (var + 1e-12))


def _block_statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    luma = _luma(images)
    flat = luma.reshape(len(luma), -1)
    lo, hi = np.percentile(flat, [1, 99], axis=1)
    out = {"brightness": flat.mean(axis=1), "bright_end": np.log(hi + GREY_LEVEL), "dark_end": lo,
           "contrast": np.log(flat.std(axis=1) + GREY_LEVEL), "entropy": _entropy(luma)}
    out["sharpness"] = _sharpness(luma) if min(luma.shape[1:]) >= 3 else np.zeros(len(luma))
    if images.shape[-1] == 3:
        x = np.asarray(images, dtype=np.float64)
        out["colourfulness"] = np.log((x.max(axis=-1) - x.min(axis=-1)).reshape(len(x), -1).mean(axis=1)
                                      + GREY_LEVEL)
    return out


def _statistics_item(item: tuple[int, int], *, images: np.ndarray) -> dict[str, np.ndarray]:
    return _block_statistics(images[item[0]:item[1]])


def image_statistics(images: np.ndarray, original_sizes: np.ndarray | None = None,
                     mapper: Mapper = serial_map, block_rows: int = PROPERTY_BLOCK) -> pd.DataFrame:
    """One row per image, one column per statistic of the module table (NaN where it does not apply).

    images: (N, H, W, C) in [0, 1], finite (run after `validated`); original_sizes: (N, 2) of
    (height, width) of the files as recorded by the source (`Dataset.original_sizes`; NaN where a
    file was unreadable), or None.
    """
    if images.ndim != 4:
        raise ConfigError(f"images have shape {images.shape}; expected (N, H, W, C)")
    parts = mapper(_statistics_item, row_blocks(len(images), block_rows), {"images": images})
    table = pd.DataFrame({s: np.concatenate([p[s] for p in parts]) if parts and s in parts[0]
                          else np.full(len(images), np.nan) for s in STATISTICS[:-2]})
    if original_sizes is None:
        table["log_size"] = table["elongation"] = np.nan
        return table
    sizes = np.asarray(original_sizes, dtype=np.float64)
    if sizes.shape != (len(images), 2) or (sizes[np.isfinite(sizes)] <= 0).any():
        raise ConfigError(f"original_sizes has shape {sizes.shape}; expected ({len(images)}, 2) positive "
                          "(height, width) pairs, one per image (NaN where unknown)")
    table["log_size"] = 0.5 * np.log(sizes[:, 0] * sizes[:, 1])
    table["elongation"] = np.abs(np.log(sizes[:, 1] / sizes[:, 0]))  # orientation-free: 2:3 as odd as 3:2
    return table


def robust_unit(values: np.ndarray, floor: float, lower_only: bool = False) -> tuple[float, float]:
    """(median, max(1.4826 x MAD, floor)) of the finite values; lower_only: the MAD of the values at or
    below the median (the spread of the lower half, for a statistic squeezed against a ceiling)."""
    values = values[np.isfinite(values)]
    med = float(np.median(values))
    spread = values[values <= med] if lower_only else values
    return med, max(1.4826 * float(np.median(np.abs(spread - med))), floor)


@dataclass(frozen=True)
class Thresholds:
    """Each check's centre and unit (what incremental pruning keeps from the last full run)."""

    centre: dict[str, float]
    unit: dict[str, float]


def fit_thresholds(table: pd.DataFrame, reasons: list[str] | tuple[str, ...] = REASONS) -> Thresholds:
    """Median and unit of each check's statistic; checks whose statistic is absent (NaN) are left out."""
    centre, unit = {}, {}
    for check in CHECKS:
        values = table[check.statistic].to_numpy(dtype=np.float64)
        if check.reason in reasons and np.isfinite(values).any():
            centre[check.reason], unit[check.reason] = robust_unit(values, check.floor, check.lower_spread)
    return Thresholds(centre, unit)


def robust_z(table: pd.DataFrame, thresholds: Thresholds) -> pd.DataFrame:
    """Signed robust z of each fitted check's statistic (columns: the reasons)."""
    by_reason = {c.reason: c for c in CHECKS}
    return pd.DataFrame({r: (table[by_reason[r].statistic].to_numpy(dtype=np.float64) - thresholds.centre[r])
                         / thresholds.unit[r] for r in thresholds.centre}, index=table.index)


def flag_matrix(z: pd.DataFrame, k: float) -> pd.DataFrame:
    """True where a check fails: z < -k (side low), z > k (high), |z| > k (both)."""
    sides = {c.reason: c.side for c in CHECKS}
    return pd.DataFrame({r: (z[r] < -k) if sides[r] == "low" else (z[r] > k) if sides[r] == "high"
                         else (z[r].abs() > k) for r in z.columns}, index=z.index)


def _worst_check(z: pd.DataFrame, flags: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flagged rows, reason, signed z) where each flagged row names the check it fails by the most."""
    excess = np.where(flags.to_numpy(), np.abs(z.to_numpy()), -np.inf)
    rows = np.flatnonzero(flags.to_numpy().any(axis=1))
    worst = excess[rows].argmax(axis=1)
    return rows, z.columns.to_numpy(dtype=object)[worst], z.to_numpy()[rows, worst]


def find_property_issues(ids: np.ndarray, images: np.ndarray, params: ImagePropertyParams | None = None,
                         original_sizes: np.ndarray | None = None, mapper: Mapper = serial_map) -> StepResult:
    """Flag images that are robust outliers on a property; one ledger row per flagged image.

    Metadata: `flagged_by_check` (every check's flags, overlapping), `thresholds` (per check: the
    statistic, median, unit and the bounds it flags beyond), `skipped` (checks that did not apply).
    """
    params = params or ImagePropertyParams()
    if len(ids) != len(images):
        raise ConfigError(f"{len(ids)} ids for {len(images)} images; expected one id per image")
    if not params.enabled or len(ids) < 3 or not params.checks:
        return StepResult(removed=removed_frame(), metadata={"flagged_by_check": {}, "thresholds": {}})
    table = image_statistics(images, original_sizes, mapper=mapper)
    return flag_table(ids, table, fit_thresholds(table, params.checks), params)


def flag_table(ids: np.ndarray, table: pd.DataFrame, fitted: Thresholds, params: ImagePropertyParams) -> StepResult:
    """One ledger row per image that fails a fitted check (the check it fails by the most)."""
    z = robust_z(table, fitted)
    flags = flag_matrix(z, params.k)
    rows, reasons, scores = _worst_check(z, flags)
    removed = removed_frame(np.asarray(ids, dtype=object)[rows], reasons, scores)
    meta = {"flagged_by_check": {r: int(flags[r].sum()) for r in flags.columns},
            "thresholds": describe_thresholds(fitted, params.k),
            "skipped": [r for r in params.checks if r not in fitted.centre], "k": params.k}
    return StepResult(removed=removed, metadata=meta)


def describe_thresholds(fitted: Thresholds, k: float) -> dict[str, dict[str, float | str | None]]:
    """Per check: its statistic, median, unit and the value(s) beyond which it flags (None: unbounded side)."""
    out: dict[str, dict[str, float | str | None]] = {}
    for check in CHECKS:
        if check.reason not in fitted.centre:
            continue
        c, u = fitted.centre[check.reason], fitted.unit[check.reason]
        out[check.reason] = {"statistic": check.statistic, "median": round(c, 5), "unit": round(u, 5),
                             "below": round(c - k * u, 5) if check.side != "high" else None,
                             "above": round(c + k * u, 5) if check.side != "low" else None}
    return out


def run(params: PropertyStepParams, inputs: StepInputs) -> StepResult:
    """The checks on the kept images, with the original sizes where the source recorded them; the
    fitted medians and units are what incremental pruning keeps (a new batch carries no original
    sizes, so there odd_size / odd_aspect never flag)."""
    if inputs.kind != "image":
        return StepResult(removed=removed_frame(), metadata={"skipped": f"image checks; the data is {inputs.kind}"})
    sizes = inputs.dataset.original_sizes
    kept_sizes = None if sizes is None else np.asarray(sizes)[inputs.positions]
    if not params.checks or len(inputs.ids) < 3:
        return StepResult(removed=removed_frame(), metadata={"flagged_by_check": {}, "thresholds": {}}, state=None)
    table = inputs.supply(image_statistics)(inputs.images, kept_sizes)
    fitted = fit_thresholds(table, params.checks)
    result = flag_table(inputs.ids, table, fitted, params)
    result.state = fitted
    return result


def decide(frozen: Thresholds | None, params: ImagePropertyParams, batch: NewBatch,
           mapper: Mapper = serial_map) -> None:
    """A new image is flagged as the full step would, against the old medians and units."""
    live = batch.live()
    if frozen is None or not len(live):
        return
    z = robust_z(image_statistics(batch.images[live], mapper=mapper), frozen)
    rows, reasons, scores = _worst_check(z, flag_matrix(z, params.k))
    batch.drop(live[rows], reasons, scores)
