"""The full-resolution check of near-duplicate candidates: a look-alike that PCA cannot tell from its
source (a fine texture the smooth images' basis does not span) is kept; a real copy (one-pixel shift,
10% brighter) is still removed, in the full step and in incremental `decide`."""

import numpy as np
import pytest

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.embedding.full_res import full_resolution_scale, pair_distances
from prune_dagster.core.ledger import Selection
from prune_dagster.core.steps.base import StepInputs
from prune_dagster.core.steps.frozen import NewBatch, OldRun
from prune_dagster.core.steps.near_dup import (
    ONE_PIXEL_SHIFTS,
    NearDedupParams,
    decide,
    find_near_duplicates,
    freeze,
    near_duplicate_views,
    nn_sample_rows,
    run,
)

SIZE = 16
CHECKER = ((np.indices((SIZE, SIZE)).sum(0) % 2) * 2 - 1).astype(np.float32)[..., None]


def blobs(n: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth images: three Gaussian blobs each."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    out = np.zeros((n, SIZE, SIZE), np.float32)
    for k in range(n):
        for _ in range(3):
            cy, cx = rng.uniform(3, SIZE - 3, 2)
            s = rng.uniform(1.5, 3)
            out[k] += rng.uniform(0.3, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return np.clip(out, 0, 1)[..., None]


def look_alike(image: np.ndarray) -> np.ndarray:
    return np.clip(image + 0.08 * CHECKER, 0, 1)


def copy_of(image: np.ndarray) -> np.ndarray:
    return np.clip(np.roll(image, 1, axis=0) * 1.1, 0, 1)


@pytest.fixture(scope="module")
def data():
    x = blobs(300, np.random.default_rng(0))
    images = np.concatenate([x, look_alike(x[1])[None], copy_of(x[0])[None]])
    ids = np.array([f"s{i:03d}" for i in range(len(images))], dtype=object)
    return ids, images, np.zeros(len(images), dtype=np.int64)


def test_pca_alone_links_the_look_alike_and_the_check_keeps_it(data):
    ids, images, labels = data
    views = near_duplicate_views(images, n_components=8)
    pca_only = find_near_duplicates(ids, views, labels)
    checked = find_near_duplicates(ids, views, labels, images=images)
    assert set(pca_only.removed["id"]) == {"s300", "s301"}  # the search finds both: PCA loses the texture
    assert checked.removed["id"].tolist() == ["s301"]  # the shifted, brighter copy
    assert checked.metadata["duplicate_of"] == {"s301": "s000"}
    assert checked.metadata["candidate_pairs"] == 2
    assert checked.metadata["pairs_rejected_at_full_resolution"] == 1
    assert checked.metadata["full_resolution_scale"] > 0


def test_pair_distance_is_shift_tolerant_symmetric_and_brightness_free(data):
    _, images, _ = data
    a, b = np.array([0, 301, 1, 300]), np.array([301, 0, 300, 1])
    d = pair_distances(images, a, b, ONE_PIXEL_SHIFTS)
    assert d[0] == pytest.approx(d[1], abs=1e-5) and d[2] == pytest.approx(d[3], abs=1e-5)
    assert d[0] < 0.05 and d[2] > 4 * d[0]
    assert pair_distances(images, a[:1], b[:1], ())[0] > 4 * d[0]  # without the shifts the copy is far


def test_full_resolution_unit_bounds_the_exact_median_from_above(data):
    _, images, _ = data
    views = near_duplicate_views(images, n_components=8)
    n = len(images)
    est = full_resolution_scale(images, views[0], nn_sample_rows(n), ONE_PIXEL_SHIFTS)
    every = np.array([pair_distances(images, np.full(n - 1, i), np.delete(np.arange(n), i), ONE_PIXEL_SHIFTS).min()
                      for i in range(n)])
    exact = float(np.median(every[every > 0]))
    assert exact <= est <= 1.2 * exact


def test_incremental_decide_applies_the_same_check(data):
    ids, images, labels = data
    old = slice(0, 300)
    dataset = Dataset(ids=ids[old], images=images[old], labels=labels[old], class_names=("blob",), source="blobs")
    selection = Selection(kept_ids=ids[old], test_ids=np.array([], dtype=object), n_train_split=300)
    params = NearDedupParams(n_components=8)
    result = run(params, StepInputs(dataset, selection))  # the state the step leaves for the index
    frozen = freeze(result.state, OldRun(dataset, selection))
    assert frozen.full_radius == pytest.approx(params.threshold * find_near_duplicates(
        ids[old], near_duplicate_views(images[old], 8), labels[old], images=images[old]).metadata[
        "full_resolution_scale"], rel=1e-4)
    batch = NewBatch(ids=np.array(["new/look", "new/copy"], dtype=object),
                     content=np.stack([look_alike(images[2]), copy_of(images[3])]), labels=np.zeros(2))
    batch.step = "near_deduplicated"
    decide(frozen, params, batch)
    assert batch.alive.tolist() == [True, False]
