"""Original sizes: an image folder records each file's (height, width) before resizing, and the
size / aspect checks read them, through the core step and through the `properties_checked` step's asset output."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from prune_dagster.core import pipeline
from prune_dagster.core.data.image_folder import load_image_folder
from prune_dagster.core.data.sources import load_digits
from prune_dagster.core.ledger import Selection
from prune_dagster.core.steps.base import StepInputs
from prune_dagster.core.steps.image_properties import ImagePropertyParams, PropertyStepParams, find_property_issues
from prune_dagster.defs.assets.steps import step_output

H, W = 20, 30  # the common size: 30 x 20 (w x h) landscape


def _write(path: Path, pixels: np.ndarray, size: tuple[int, int]) -> None:
    """Write `pixels` (H x W grey) nearest-upscaled to `size` (w, h): resized back, it is the same picture."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).resize(size, Image.Resampling.NEAREST).save(path)


@pytest.fixture
def folder(tmp_path, rng) -> Path:
    """24 PNGs of 30x20 in two classes, plus `a/big.png` 240x160 (8 x the side) and `b/strip.png` 120x20 (6:1)."""
    base = np.clip(np.linspace(40, 215, W)[None, :] + rng.normal(0, 25, (24 + 2, H, W)), 0, 255).astype(np.uint8)
    for i in range(24):
        _write(tmp_path / "ab"[i % 2] / f"{i:02d}.png", base[i], (W, H))
    _write(tmp_path / "a" / "big.png", base[24], (8 * W, 8 * H))
    _write(tmp_path / "b" / "strip.png", base[25], (4 * W, H))
    return tmp_path


def test_the_folder_records_original_sizes(folder):
    ds = load_image_folder(folder)
    assert ds.image_shape == (H, W, 1)  # every image resized to the common size
    sizes = dict(zip(ds.ids, map(tuple, ds.original_sizes), strict=True))
    assert sizes["a/big.png"] == (8 * H, 8 * W) and sizes["b/strip.png"] == (H, 4 * W)
    assert sizes["a/00.png"] == (H, W)  # (height, width)
    assert load_digits().original_sizes is None  # array sources record none


def test_odd_size_and_aspect_flagged_through_the_core_step(folder):
    ds = load_image_folder(folder)
    result = find_property_issues(ds.ids, ds.images, ImagePropertyParams(), original_sizes=ds.original_sizes)
    assert result.removed.set_index("id")["reason"].to_dict() == {"a/big.png": "odd_size",
                                                                  "b/strip.png": "odd_aspect"}
    assert "odd_size" not in result.metadata["skipped"]
    # Without the sizes the two checks are skipped (the big file, downscaled, still reads as blurry).
    blind = find_property_issues(ds.ids, ds.images)
    assert {"odd_size", "odd_aspect"} <= set(blind.metadata["skipped"])
    assert not {"odd_size", "odd_aspect"} & set(blind.removed["reason"])


def test_the_asset_passes_the_recorded_sizes(folder):
    ds = load_image_folder(folder).with_split(0.2, 0)
    train = ds.ids[~np.isin(ds.ids, ["a/00.png", "b/01.png"])]  # all but two: both odd files are in
    validated = Selection(kept_ids=train, test_ids=np.array(["a/00.png", "b/01.png"], dtype=object),
                          n_train_split=len(train))
    pixel_checks = ["dark", "light", "low_contrast", "blurry", "low_information"]  # downscaled = smoother
    step = pipeline.step("properties_checked")
    params = PropertyStepParams(enabled=True, skip=pixel_checks)
    inputs = StepInputs(ds, validated)
    out = step_output(step, params, inputs, step.execute(params, inputs), 0.0)
    assert isinstance(out, dg.Output)
    ledger = out.value.ledger
    assert dict(zip(ledger["id"], ledger["reason"], strict=True)) == {"a/big.png": "odd_size",
                                                                     "b/strip.png": "odd_aspect"}
    # The strip (120 x 20) is also twice the common side, so odd_size counts it too; its row names aspect.
    assert out.metadata["flagged_by_check"].value == {"odd_size": 2, "odd_aspect": 1}
