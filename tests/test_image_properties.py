"""Image-property checks: each planted defect is flagged by its own check, clean images are not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from pydantic import ValidationError
from scipy.ndimage import gaussian_filter
from sklearn.datasets import load_digits

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.ledger import Selection
from prune_dagster.core.steps.frozen import NewBatch
from prune_dagster.core.steps.image_properties import (
    REASONS,
    ImagePropertyParams,
    decide,
    find_property_issues,
    fit_thresholds,
    image_statistics,
    robust_unit,
)


def clean_images(n: int, rng: np.random.Generator, channels: int = 1) -> np.ndarray:
    """n of sklearn's digits bilinearly upsampled to 24x24 with N(0, 0.01) noise; in colour, each tinted."""
    x = torch.from_numpy(load_digits().images[:n, None].astype(np.float32) / 16.0)
    img = F.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False).numpy().transpose(0, 2, 3, 1)
    img = np.clip(img + rng.normal(0, 0.01, img.shape), 0, 1)
    if channels == 3:
        img = img * rng.uniform(0.3, 1.0, (n, 1, 1, 3))
    return img.astype(np.float32)


@pytest.fixture
def planted(rng):
    """200 clean images, then one of each defect (positions 200..204)."""
    x = clean_images(205, rng)
    x[200] *= 0.25  # dark
    x[201] = x[201] * 0.6 + 0.4  # overexposed (washed out)
    x[202] = gaussian_filter(x[202], sigma=(2.0, 2.0, 0))  # blurred
    x[203] = 0.5 + rng.normal(0, 0.002, x[203].shape)  # blank-ish
    return x


def test_each_defect_gets_its_reason(planted):
    ids = np.array([f"s{i}" for i in range(len(planted))], dtype=object)
    result = find_property_issues(ids, planted)
    by_id = dict(zip(result.removed["id"], result.removed["reason"], strict=True))
    assert by_id.pop("s200") == "dark"
    assert by_id.pop("s201") == "light"
    assert by_id.pop("s202") == "blurry"
    assert by_id.pop("s203") in {"low_contrast", "low_information"}
    assert by_id == {}, f"clean images flagged: {by_id}"
    scores = dict(zip(result.removed["id"], result.removed["score"], strict=True))
    assert scores["s200"] < -5 and scores["s201"] > 5  # signed robust z beyond k
    meta = result.metadata
    assert meta["flagged_by_check"]["dark"] >= 1 and meta["skipped"] == ["odd_size", "odd_aspect",
                                                                          "grayscale_in_colour"]
    assert meta["thresholds"]["dark"]["below"] < meta["thresholds"]["dark"]["median"]
    assert meta["thresholds"]["dark"]["above"] is None  # one-sided


def test_sizes_and_grey_in_colour(rng):
    x = clean_images(120, rng, channels=3)
    x[5] = x[5].mean(axis=-1, keepdims=True).repeat(3, axis=-1)  # grey image in a colour set
    sizes = np.column_stack([rng.integers(380, 420, 120), rng.integers(500, 540, 120)]).astype(float)
    sizes[7] = (40, 52)  # a thumbnail
    sizes[9] = (400, 1600)  # a panorama
    ids = np.array([f"c{i}" for i in range(120)], dtype=object)
    removed = find_property_issues(ids, x, original_sizes=sizes).removed.set_index("id")["reason"]
    assert removed.to_dict() == {"c5": "grayscale_in_colour", "c7": "odd_size", "c9": "odd_aspect"}


def test_all_equal_sizes_flag_nothing_but_the_odd_one(rng):
    x = clean_images(50, rng)
    sizes = np.full((50, 2), 28.0)
    flagged = find_property_issues(np.arange(50).astype(str), x, original_sizes=sizes).removed
    assert flagged.empty  # MAD 0: the floor keeps equal sizes from being outliers of each other
    sizes[3] = (56, 56)
    flagged = find_property_issues(np.arange(50).astype(str), x, original_sizes=sizes).removed
    assert flagged["id"].tolist() == ["3"] and flagged["reason"].tolist() == ["odd_size"]


def test_statistics_follow_their_definitions(rng):
    flat = np.full((1, 8, 8, 1), 0.25, np.float32)
    halves = np.zeros((1, 8, 8, 1), np.float32)
    halves[:, :, 4:] = 1.0
    table = image_statistics(np.concatenate([flat, halves]))
    assert table["brightness"].tolist() == pytest.approx([0.25, 0.5])
    assert table["entropy"].tolist() == pytest.approx([0.0, 1.0])  # one level; two equal levels = 1 bit
    assert np.exp(table["bright_end"][1]) == pytest.approx(1.0 + 1 / 255)
    assert table["dark_end"].tolist() == pytest.approx([0.25, 0.0])
    assert np.isnan(table["colourfulness"]).all() and np.isnan(table["log_size"]).all()


def test_skip_disabled_and_bad_settings(planted):
    ids = np.arange(len(planted)).astype(str)
    skipped = find_property_issues(ids, planted, ImagePropertyParams(skip=["dark", "light"])).removed
    assert not {"dark", "light"} & set(skipped["reason"])
    assert find_property_issues(ids, planted, ImagePropertyParams(enabled=False)).removed.empty
    with pytest.raises(ValidationError, match="unknown check"):
        ImagePropertyParams(skip=["sharpness"])
    with pytest.raises(ValidationError):
        ImagePropertyParams(k=0)
    assert set(ImagePropertyParams().checks) == set(REASONS)


def test_removals_apply_to_a_selection(planted):
    ids = np.array([f"s{i}" for i in range(len(planted))], dtype=object)
    sel = Selection(kept_ids=ids, test_ids=np.array([], dtype=object), n_train_split=len(ids))
    after = sel.advance("image_properties", find_property_issues(ids, planted), {}, 0.1)
    assert after.n_train_split - len(after.kept_ids) == 4
    assert set(after.ledger["reason"]) <= set(REASONS)


def test_incremental_decide_uses_frozen_thresholds(planted, rng):
    frozen = fit_thresholds(image_statistics(planted[:200]))
    new = np.concatenate([clean_images(3, rng), planted[200:202]])
    batch = NewBatch(ids=np.array(list("abcde"), dtype=object), content=new, labels=np.zeros(5))
    batch.step = "image_properties"
    decide(frozen, ImagePropertyParams(), batch)
    assert batch.removed()["id"].tolist() == ["d", "e"]
    assert batch.removed()["reason"].tolist() == ["dark", "light"]


def test_aspect_is_judged_without_orientation(rng):
    """Portrait 2:3 beside landscape 3:2 is ordinary (CleanVision's min(w/h, h/w) too); 3:1 either way is odd."""
    x = clean_images(60, rng)
    sizes = np.array([(400.0, 600.0) if i % 3 else (600.0, 400.0) for i in range(60)])  # a third upright
    sizes[4], sizes[5] = (300.0, 900.0), (900.0, 300.0)
    removed = find_property_issues(np.arange(60).astype(str), x, original_sizes=sizes).removed
    assert dict(zip(removed["id"], removed["reason"], strict=True)) == {"4": "odd_aspect", "5": "odd_aspect"}
    table = image_statistics(x[:2], np.array([(400.0, 600.0), (600.0, 400.0)]))
    assert table["elongation"].tolist() == pytest.approx([np.log(1.5)] * 2)


def test_unknown_sizes_are_skipped_not_refused(rng):
    sizes = np.array([(28.0, 28.0), (np.nan, np.nan), (28.0, 28.0)])
    table = image_statistics(clean_images(3, rng), sizes)
    assert np.isnan(table["log_size"][1]) and table["log_size"][0] == pytest.approx(np.log(28))
    with pytest.raises(ConfigError, match="original_sizes"):
        image_statistics(clean_images(3, rng), np.array([(28.0, 28.0), (0.0, 28.0), (28.0, 28.0)]))


def test_entropy_spread_is_read_below_the_median():
    """Entropy is capped (8 bits) and photographs crowd under the cap: the spread of the lower half sets
    the unit, so a long natural tail of plainer images is not flagged (colour benchmark: 58 -> 4 clean)."""
    values = np.concatenate([np.linspace(7.0, 7.6, 70), np.linspace(4.0, 7.0, 30)])  # squeezed top, long tail
    med, unit = robust_unit(values, 0.05, lower_only=True)
    symmetric = robust_unit(values, 0.05)[1]
    assert med == pytest.approx(np.median(values)) and unit > 2 * symmetric
    assert (values < med - 5 * symmetric).sum() == 13 and (values < med - 5 * unit).sum() == 0
    fitted = fit_thresholds(pd.DataFrame({"entropy": values, **{s: np.nan for s in ("bright_end", "dark_end",
                            "contrast", "sharpness", "colourfulness", "log_size", "elongation")}}))
    assert set(fitted.unit) == {"low_information"} and fitted.unit["low_information"] == pytest.approx(unit)


def test_light_needs_a_real_lift_of_the_darkest_pixels(rng):
    """The unit floor of `light` (0.06): a black point lifted by less than 0.3 over the set's median is
    ordinary (haze, a bright backdrop), a washed-out image (lifted by 0.4) is flagged."""
    x = clean_images(100, rng)
    x[0] = x[0] * 0.8 + 0.2  # lifted by 0.2: hazy, kept
    x[1] = x[1] * 0.6 + 0.4  # lifted by 0.4: washed out, flagged
    removed = find_property_issues(np.arange(100).astype(str), x, ImagePropertyParams(skip=["low_contrast"])).removed
    assert removed.set_index("id")["reason"].get("1") == "light" and "0" not in set(removed["id"])
