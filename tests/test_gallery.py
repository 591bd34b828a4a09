"""The removed-sample gallery a person can judge (issue 14): tiles of at least 64 px upscaled without
smoothing, a caption under each tile, near duplicates beside the kept sample, "showing N of M"."""

import base64
import io
import re

import dagster as dg
import numpy as np
from conftest import step_output_of
from PIL import Image

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.data.gallery import MIN_TILE, Tile, tiles_png
from prune_dagster.core.ledger import Selection, StepResult, removed_frame
from prune_dagster.core.steps.near_dup import find_near_duplicates


def small_dataset(n: int = 40) -> Dataset:
    rng = np.random.default_rng(0)
    images = rng.random((n, 8, 8, 1)).astype(np.float32)
    images[1] = images[0]  # 1 duplicates 0
    ids = np.array([f"s{i}" for i in range(n)], dtype=object)
    return Dataset(ids=ids, images=images, labels=np.arange(n) % 3, class_names=("a", "b", "c"), source="toy",
                   split=np.array(["train"] * n, dtype=object))


def fresh(ds: Dataset) -> Selection:
    return Selection(kept_ids=ds.ids.copy(), test_ids=np.array([], dtype=object), n_train_split=len(ds))


def png_of(markdown: str) -> Image.Image:
    data = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", markdown).group(1)
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_tiles_are_nearest_upscaled_to_at_least_64_px():
    img = np.zeros((8, 8, 1))
    img[:, :4] = 1.0  # a sharp vertical edge: smoothing would leave grey columns
    png = Image.open(io.BytesIO(tiles_png([Tile(img, ["x"])], cell=32))).convert("L")
    arr = np.asarray(png)
    row = arr[3 + MIN_TILE // 2, 3:3 + MIN_TILE]  # one row through the tile (3 px margin)
    assert set(np.unique(row)) <= {0, 255}  # only black and white: nearest, no smoothing
    assert (row == 255).sum() == MIN_TILE // 2  # the tile is MIN_TILE wide even when 32 was asked
    assert png.height > MIN_TILE + 6  # room for the caption under the tile


def test_step_gallery_has_captions_count_pairs_and_the_full_list():
    ds = small_dataset()
    selection = fresh(ds)
    scores = np.linspace(0.1, 0.9, 20)

    def compute(ids, images, labels):
        return StepResult(removed=removed_frame(ids[10:30], "odd", np.r_[scores, [np.nan]][:20]),
                          metadata={"predicted_label": {"s29": 0}})

    out = step_output_of("outliers_removed", ds, selection, compute)
    text = out.metadata["removed_samples"].value
    assert "Showing 16 of 20 removed" in text
    captions = re.findall(r"^\d+\. (.*)$", text, flags=re.M)
    assert len(captions) == 16
    assert captions[0].startswith("s29 · c -> a · score 0.9")  # highest score first, given -> predicted
    assert png_of(text).width >= 8 * MIN_TILE
    table = out.metadata["removed_ledger"]
    assert isinstance(table, dg.TableMetadataValue) and len(table.value.records) == 20
    assert out.metadata["dataset"].value == "toy" and len(out.metadata["dataset_digest"].value) == 32


def test_near_duplicate_is_shown_beside_its_kept_sample():
    ds = small_dataset()
    result = find_near_duplicates(ds.ids, ds.images.reshape(len(ds), -1), ds.labels, threshold=0.05)
    assert result.metadata["duplicate_of"] == {"s1": "s0"}
    selection = fresh(ds)
    out = step_output_of("near_deduplicated", ds, selection, lambda *a: result)
    text = out.metadata["removed_samples"].value
    assert "Showing 1 of 1 removed" in text and "dup of s0" in text
    assert "duplicate_of" not in out.metadata  # read by the gallery, not shown raw
    assert png_of(text).width >= 2 * MIN_TILE  # the removed tile and the kept one
