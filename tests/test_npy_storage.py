"""Large-dataset plumbing: the .npy folder source, pixels stored once and memory-mapped, the
vectorised exact-duplicate hash and its byte-for-byte check."""

import json
import pickle

import numpy as np
import pytest

from prune_dagster.core.data.sources import load_source
from prune_dagster.core.errors import DatasetError
from prune_dagster.core.infra.parallel import ArrayRef, by_reference, row_blocks, serial_map
from prune_dagster.core.steps.dedup import content_hashes, exact_groups, find_exact_duplicates
from prune_dagster.core.steps.validate import sample_problems
from prune_dagster.defs.io import load_pixels, store_pixels


def write_npy_folder(root, n=40, seed=0, split=True):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "images.npy", rng.random((n, 8, 8, 1), dtype=np.float32))
    np.save(root / "labels.npy", rng.integers(0, 3, n))
    np.save(root / "ids.npy", np.array([f"s{i:04d}" for i in range(n)]))
    if split:
        np.save(root / "split.npy", np.where(np.arange(n) % 5 == 0, "test", "train"))
    (root / "class_names.json").write_text(json.dumps(["cat", "dog", "eel"]))
    return root


def test_npy_folder_is_memory_mapped_with_its_split_and_names(tmp_path):
    root = write_npy_folder(tmp_path / "ds")
    ds = load_source(str(root))
    assert isinstance(ds.images, np.memmap) and not ds.images.flags.writeable
    assert ds.class_names == ("cat", "dog", "eel")
    assert ds.ids[3] == "s0003" and (ds.split == "test").sum() == 8
    assert ds.load_info["memory_mapped"] is True


@pytest.mark.parametrize("breakage, message", [
    (lambda r: (r / "labels.npy").unlink(), "labels.npy is missing"),
    (lambda r: np.save(r / "labels.npy", np.arange(39)), "expected (40,)"),
    (lambda r: np.save(r / "labels.npy", np.full(40, 3)), "indices into the 3 names"),
    (lambda r: np.save(r / "split.npy", np.full(40, "dev")), "'dev' at row 0"),
    (lambda r: np.save(r / "ids.npy", np.array(["a"] * 40)), "'a' appears 40 times"),
    (lambda r: np.save(r / "labels.npy", np.array([object()] * 40), allow_pickle=True), "labels.npy: not a readable"),
])
def test_bad_npy_folder_names_the_file_at_fault(tmp_path, breakage, message):
    root = write_npy_folder(tmp_path / "ds")
    breakage(root)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_source(str(root))


def test_stored_pixels_are_written_once_and_come_back_memory_mapped(tmp_path):
    ds = load_source(str(write_npy_folder(tmp_path / "ds")))
    first = store_pixels(ds, tmp_path / "arrays")
    second = store_pixels(ds, tmp_path / "arrays")
    assert first == second and len(list((tmp_path / "arrays").glob("*.npy"))) == 1
    back = load_pixels(pickle.loads(pickle.dumps(first)))
    assert isinstance(back.images, np.memmap)
    assert back.digest() == ds.digest() and np.array_equal(back.images, ds.images)
    assert len(pickle.dumps(first)) < ds.images.nbytes  # the pixels are referenced, not pickled


def test_memory_map_travels_by_path(tmp_path):
    ds = load_source(str(write_npy_folder(tmp_path / "ds")))
    ref = pickle.loads(pickle.dumps(by_reference(ds.images)))
    assert isinstance(ref, ArrayRef) and np.array_equal(ref.load(), ds.images)
    assert not isinstance(by_reference(ds.images[1:]), ArrayRef)  # a slice is shipped as bytes


def test_validation_in_blocks_matches_one_block(tmp_path):
    ds = load_source(str(write_npy_folder(tmp_path / "ds", n=50)))
    images = np.array(ds.images)
    images[[3, 17]] = np.nan
    images[29] = 0.5
    ds = type(ds)(ids=ds.ids, images=images, labels=ds.labels, class_names=ds.class_names, source="t")
    ids = ds.ids[::-1]  # any order in, same answers
    small_blocks = sample_problems(ds, ids, mapper=lambda fn, items, shared=None: serial_map(
        fn, [b for item in items for b in np.array_split(item, 7)], shared))
    assert small_blocks == sample_problems(ds, ids) == {
        "s0029": "blank_image", "s0017": "non_finite_pixels", "s0003": "non_finite_pixels"}
    assert row_blocks(5, 2) == [(0, 2), (2, 4), (4, 5)]


def test_hash_is_blockwise_identical_and_sees_negative_zero_as_zero():
    rng = np.random.default_rng(1)
    x = rng.random((300, 4, 4, 1), dtype=np.float32)
    x[7] = 0.0
    x[8] = -0.0
    one = content_hashes(x)
    blocks = content_hashes(x, mapper=lambda fn, items, shared=None: [fn(b) for b in np.array_split(x, 9)])
    assert np.array_equal(one, blocks)
    assert np.array_equal(one[7], one[8]) and len(np.unique(one, axis=0)) == 299


def test_a_hash_collision_never_merges_different_images():
    rng = np.random.default_rng(2)
    a, b, c = rng.random((3, 4, 4, 1), dtype=np.float32)
    images = np.stack([a, b, a, c, b, a])
    assert exact_groups(images, np.zeros((6, 2), np.uint64)).tolist() == [0, 1, 0, 2, 1, 0]
    ids = np.array([f"i{k}" for k in range(6)], dtype=object)
    removed = find_exact_duplicates(ids, images, np.zeros(6, np.int64)).removed
    assert sorted(removed["id"]) == ["i2", "i4", "i5"]


def test_representation_arrays_are_stored_beside_the_pickle_and_memory_mapped(tmp_path):
    from prune_dagster.core.training.shared import SharedRepresentation
    from prune_dagster.defs.io import load_arrays, store_arrays

    rng = np.random.default_rng(0)
    n = 5000
    rep = SharedRepresentation("learned", np.array([f"s{i}" for i in range(n)]),
                               probs=rng.random((n, 10), dtype=np.float32),
                               embeddings=rng.random((n, 128), dtype=np.float32),
                               el2n=rng.random(n), oof_accuracy=0.9, seconds=1.5)
    pkl = tmp_path / "rep" / "run1.pkl"
    stored = pickle.dumps(store_arrays(rep, pkl))
    assert len(stored) < 0.2 * rep.embeddings.nbytes  # the arrays are not in the pickle
    assert sorted(p.name for p in pkl.parent.iterdir()) == ["run1.el2n.npy", "run1.embeddings.npy", "run1.probs.npy"]
    back = load_arrays(pickle.loads(stored), pkl)
    for name in ("probs", "embeddings", "el2n"):
        got = getattr(back, name)
        assert isinstance(got, np.memmap) and not got.flags.writeable
        assert np.array_equal(got, getattr(rep, name))
    assert back.ids.tolist() == rep.ids.tolist() and back.oof_accuracy == 0.9
    assert np.array_equal(back.embeddings_of(np.array(["s7", "s3"])), rep.embeddings[[7, 3]])
