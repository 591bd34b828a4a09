"""Messy input, one test per case of issue 7's list that belongs to the data layer (see RELIABILITY.md).

Per-sample problems: the load goes on and `validate` removes exactly that sample with its reason.
Dataset problems: a DatasetError that names the file (or folder) and says what was expected.
"""

import io
import os
import pickle
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageFile

from prune_dagster.core.data.dataset import TEST, TRAIN, Dataset, stratified_split
from prune_dagster.core.data.sources import load_image_folder, load_npz, load_source
from prune_dagster.core.errors import DatasetError, PruneError
from prune_dagster.core.steps.validate import validate


def save(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def noise(seed: int, shape: tuple[int, ...] = (8, 8)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def good_folder(root: Path, n: int = 3, size: tuple[int, int] = (8, 8)) -> Path:
    """Two classes, `n` random grey h x w PNGs each."""
    for c in ("a", "b"):
        for i in range(n):
            save(root / c / f"{i}.png", noise(hash((c, i)) % 1000, (size[1], size[0])))
    return root


def removed(ds: Dataset) -> dict[str, str]:
    """id → reason of every sample `validate` removes (all samples treated as training)."""
    result = validate(ds, ds.ids)
    return dict(zip(result.removed["id"], result.removed["reason"], strict=True))


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A valid 8x8 PNG whose IHDR is rewritten to declare width x height (CRC fixed): a bomb header."""
    save(path, np.zeros((8, 8), np.uint8))
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)  # np.savez pickles object arrays: exactly the hostile file to refuse
    return path


# ----------------------------------------------------------------------------------- image folder


def test_truncated_png_is_removed_with_reason(tmp_path):
    root = good_folder(tmp_path / "ds")
    full = save(tmp_path / "full.png", noise(7)).read_bytes()
    (root / "a" / "cut.png").write_bytes(full[: len(full) // 2])  # header intact, pixel data cut
    ds = load_image_folder(root)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert np.isnan(ds.images[list(ds.ids).index("a/cut.png")]).all()
    reasons = removed(ds)
    assert list(reasons) == ["a/cut.png"]
    assert reasons["a/cut.png"].startswith("truncated_image: image file is truncated")


def test_zero_byte_file_is_removed_with_reason(tmp_path):
    root = good_folder(tmp_path / "ds")
    (root / "b" / "zero.png").write_bytes(b"")
    (root / "b" / "garbage.jpg").write_bytes(b"not an image at all")
    assert removed(load_image_folder(root)) == {"b/garbage.jpg": "unreadable: not a PNG or JPEG image",
                                                "b/zero.png": "empty_file: 0 bytes"}


def test_txt_and_ds_store_among_images_are_ignored_not_errors(tmp_path):
    root = good_folder(tmp_path / "ds")
    (root / "a" / "notes.txt").write_text("labels were checked by hand")
    (root / "a" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / ".DS_Store").write_bytes(b"\x00")
    (root / "b" / "._0.png").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork: hidden
    ds = load_image_folder(root)
    assert len(ds) == 6 and all(i.endswith(".png") and "/." not in i for i in ds.ids)
    assert ds.load_errors == {} and removed(ds) == {}
    assert ds.load_info["n_ignored"] == 4
    assert ds.load_info["ignored_examples"]["a/notes.txt"] == "not an image (.txt)"
    assert ds.load_info["ignored_examples"]["a/.DS_Store"] == "hidden"


def test_different_sizes_are_resized_to_the_most_common(tmp_path):
    root = good_folder(tmp_path / "ds")
    wide = np.zeros((10, 12), np.uint8)  # 12 wide, 10 high: left half black, right half 200
    wide[:, 6:] = 200
    save(root / "a" / "wide.png", wide)
    ds = load_image_folder(root)
    assert ds.images.shape == (7, 8, 8, 1) and ds.load_info["n_resized"] == 1
    assert removed(ds) == {}
    resized = ds.images[list(ds.ids).index("a/wide.png"), ..., 0]
    np.testing.assert_allclose(resized[:, 0], 0, atol=1e-6)
    np.testing.assert_allclose(resized[:, -1], 200 / 255, atol=1e-6)


def test_different_sizes_rejected_name_the_size(tmp_path):
    root = good_folder(tmp_path / "ds")
    save(root / "a" / "wide.png", noise(9, (10, 12)))
    assert removed(load_image_folder(root, on_size_mismatch="reject")) == {
        "a/wide.png": "size_mismatch: 12x10, expected 8x8"}
    # an explicit size: every other image is the mismatch now (and class b is left with no sample)
    ds = load_image_folder(root, size=(12, 10), on_size_mismatch="reject")
    assert len(ds.load_errors) == 6 and ds.load_errors["b/0.png"] == "size_mismatch: 8x8, expected 12x10"
    with pytest.raises(DatasetError, match="1 class \\('a'\\) after validation"):
        validate(ds, ds.ids)


def test_mixed_grey_rgb_rgba_become_rgb_with_alpha_on_white(tmp_path):
    root = tmp_path / "ds"
    save(root / "a" / "grey.png", np.full((8, 8), 60, np.uint8))
    save(root / "a" / "rgb.png", np.dstack([np.full((8, 8), v, np.uint8) for v in (255, 0, 0)]))
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = (0, 0, 255)
    rgba[:4, :, 3] = 255  # top half opaque blue, bottom half fully transparent
    save(root / "b" / "rgba.png", rgba)
    save(root / "b" / "grey_alpha.png", np.dstack([np.full((8, 8), 0, np.uint8), np.full((8, 8), 0, np.uint8)]))
    ds = load_image_folder(root)
    assert ds.images.shape == (4, 8, 8, 3) and ds.load_info["channel_layout"] == "RGB"
    img = dict(zip(ds.ids, ds.images, strict=True))
    np.testing.assert_allclose(img["a/grey.png"], 60 / 255, atol=1e-6)
    np.testing.assert_array_equal(img["a/rgb.png"][0, 0], [1, 0, 0])
    np.testing.assert_array_equal(img["b/rgba.png"][0, 0], [0, 0, 1])
    np.testing.assert_array_equal(img["b/rgba.png"][7, 7], [1, 1, 1])  # transparent → white
    np.testing.assert_array_equal(img["b/grey_alpha.png"], np.ones((8, 8, 3)))  # LA, alpha 0 → white
    dropped = dict(zip(*(lambda d: (d.ids, d.images))(load_image_folder(root, alpha="drop")), strict=True))
    np.testing.assert_array_equal(dropped["b/rgba.png"][7, 7], [0, 0, 1])  # stored colour kept
    black = dict(zip(*(lambda d: (d.ids, d.images))(load_image_folder(root, alpha="black")), strict=True))
    np.testing.assert_array_equal(black["b/rgba.png"][7, 7], [0, 0, 0])


def test_16_bit_png_is_scaled_by_65535_without_losing_precision(tmp_path):
    root = tmp_path / "ds"
    values = np.array([[0, 1, 1000, 65535]] * 4, dtype=np.uint16)  # dark values must stay dark
    save(root / "a" / "deep.png", values)
    save(root / "b" / "eight.png", np.full((4, 4), 255, np.uint8))
    with Image.open(root / "a" / "deep.png") as im:
        assert im.mode.startswith("I;16")
    ds = load_image_folder(root)
    assert ds.load_info["channel_layout"] == "L"
    np.testing.assert_allclose(ds.images[0, 0, :, 0], values[0] / 65535, rtol=1e-6)
    assert ds.images[0, 0, 1, 0] > 0  # 1/65535 survives (8-bit rounding would make it 0)
    np.testing.assert_array_equal(ds.images[1], 1.0)


def test_decompression_bomb_header_is_a_per_sample_error(tmp_path):
    root = good_folder(tmp_path / "ds")
    png_declaring(root / "b" / "bomb.png", 50000, 50000)
    before = Image.MAX_IMAGE_PIXELS
    ds = load_image_folder(root)
    assert Image.MAX_IMAGE_PIXELS == before  # the global limit is restored after the load
    assert removed(ds) == {"b/bomb.png": "decompression_bomb: declares 2500000000 pixels, more than "
                                         "max_image_pixels=67108864; not decoded"}


def test_image_just_over_max_image_pixels_is_refused_not_warned(tmp_path):
    """Pillow only *warns* between 1x and 2x its limit; the loader turns that warning into a refusal."""
    root = good_folder(tmp_path / "ds")
    save(root / "a" / "big.png", noise(5, (10, 10)))  # 100 pixels: 1x..2x of a 64-pixel limit
    ds = load_image_folder(root, max_image_pixels=64, size=(8, 8))
    assert removed(ds) == {"a/big.png": "decompression_bomb: declares 100 pixels, more than max_image_pixels=64; "
                                        "not decoded"}


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_outside_the_root_is_refused_and_never_read(tmp_path, monkeypatch):
    root = good_folder(tmp_path / "ds")
    secret = save(tmp_path / "private" / "secret.png", noise(3))
    os.symlink(secret, root / "a" / "link.png")
    os.symlink(secret.parent, root / "b" / "linked_dir")  # a symlinked folder inside a class: not followed
    os.symlink(secret.parent, root / "c")  # a whole class folder that lives outside the root
    os.symlink(root / "a" / "0.png", root / "b" / "inside.png")  # inside the root: allowed
    os.symlink(root / "a" / "missing.png", root / "b" / "dangling.png")
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(Path(fp)) or real_open(fp, *a, **k))
    ds = load_image_folder(root)
    assert not any(p.resolve().is_relative_to(secret.parent) for p in opened)
    reasons = removed(ds)
    assert set(reasons) == {"a/link.png", "c/secret.png", "b/dangling.png"}
    assert reasons["a/link.png"].startswith(f"outside_root: resolves to {secret}, outside the dataset root")
    assert reasons["c/secret.png"].startswith("outside_root")
    assert reasons["b/dangling.png"] == "broken_symlink: points to a missing file"
    assert "b/inside.png" in set(ds.ids) and ds.load_info["ignored_examples"]["b/linked_dir/"] == "folder not followed"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_named_like_an_image_is_never_opened(tmp_path):
    root = good_folder(tmp_path / "ds")
    os.mkfifo(root / "a" / "pipe.png")  # opening it would block the load forever
    assert removed(load_image_folder(root)) == {"a/pipe.png": "unreadable: not a regular file"}


def test_unlistable_folder_is_reported_not_fatal(tmp_path, monkeypatch):
    root = good_folder(tmp_path / "ds")
    save(root / "b" / "locked" / "x.png", noise(4))
    real_scandir = os.scandir

    def scandir(path="."):  # what a folder without read permission does (chmod is moot for root)
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    ds = load_image_folder(root)
    assert len(ds) == 6 and ds.load_info["ignored_examples"]["b/locked/"] == "unreadable folder (Permission denied)"


def test_empty_class_folder_is_reported_and_not_a_class(tmp_path):
    root = good_folder(tmp_path / "ds")
    (root / "zebra").mkdir()
    (root / "zebra" / "README.txt").write_text("no images yet")
    ds = load_image_folder(root)
    assert ds.class_names == ("a", "b") and ds.load_info["empty_classes"] == ["zebra"]
    split = ds.with_split(0.34, 0)
    result = validate(split, split.ids_in(TRAIN))
    assert result.metadata["classes_without_usable_samples"] == [] and len(result.removed) == 0
    # a class whose only file is unusable stays a class (it has a file), and validation says so
    (root / "broken").mkdir()
    (root / "broken" / "x.png").write_bytes(b"")
    split = load_image_folder(root).with_split(0.34, 0)
    result = validate(split, split.ids_in(TRAIN))
    assert result.metadata["classes_without_usable_samples"] == ["broken"]
    assert result.metadata["removed_by_category"] == {"empty_file": 1}


def test_single_class_dataset_stops_in_validate(tmp_path):
    root = tmp_path / "ds"
    for i in range(4):
        save(root / "only" / f"{i}.png", noise(i))
    ds = load_image_folder(root)
    with pytest.raises(DatasetError, match=f"{root.resolve()}: the training data has 1 class \\('only'\\).*at least 2"):
        validate(ds, ds.ids)
    # two classes on disk, but every image of one is unreadable: the same stop, after validation
    (root / "broken").mkdir()
    (root / "broken" / "x.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="1 class"):
        validate(load_image_folder(root), load_image_folder(root).ids)


def test_class_with_one_sample_splits_and_validates(tmp_path):
    root = good_folder(tmp_path / "ds", n=5)
    save(root / "rare" / "only.png", noise(11))
    ds = load_image_folder(root).with_split(0.2, 0)
    assert ds.split[list(ds.ids).index("rare/only.png")] == TRAIN  # never moved to test
    assert (ds.split == TEST).sum() == 2  # one of each 5-sample class
    result = validate(ds, ds.ids_in(TRAIN))
    assert len(result.removed) == 0 and result.metadata["class_counts"]["rare"] == 1


def test_all_files_unreadable_names_the_folder(tmp_path):
    root = tmp_path / "ds"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        (root / c / "x.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="none of the 2 image files could be read.*empty_file"):
        load_image_folder(root)


# ------------------------------------------------------------------------------------------- .npz


def test_nan_and_inf_pixels_in_npz_are_removed_per_sample(tmp_path):
    images = np.random.default_rng(0).random((6, 4, 4)).astype(np.float32)
    images[1, 0, 0] = np.nan
    images[4, 2, 3] = -np.inf
    ds = load_npz(npz(tmp_path / "d.npz", images=images, labels=[0, 1, 0, 1, 0, 1],
                      ids=np.array([f"s{i}" for i in range(6)])))
    assert removed(ds) == {"s1": "non_finite_pixels", "s4": "non_finite_pixels"}


def test_npz_with_object_arrays_is_refused_without_unpickling(tmp_path, monkeypatch):
    def no_unpickling(*args, **kwargs):
        raise AssertionError("pickle must never run on user data")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    images = np.empty(2, dtype=object)
    images[0], images[1] = np.zeros((4, 4)), np.ones((4, 4))
    path = npz(tmp_path / "evil.npz", images=images, labels=np.array([0, 1]))
    with pytest.raises(DatasetError, match=f"{path}\\['images'\\]: is an object array.*never used on user data"):
        load_npz(path)
    path = npz(tmp_path / "labels.npz", images=np.zeros((2, 4, 4)), labels=np.array(["a", 1], dtype=object))
    with pytest.raises(DatasetError, match="\\['labels'\\]: is an object array"):
        load_source(str(path))


def test_labels_of_the_wrong_length_or_shape(tmp_path):
    path = npz(tmp_path / "short.npz", images=np.zeros((3, 4, 4)), labels=[0, 1])
    with pytest.raises(DatasetError, match=f"{path}: 3 images but 2 labels; expected one label per image"):
        load_npz(path)
    path = npz(tmp_path / "twod.npz", images=np.zeros((3, 4, 4)), labels=np.zeros((3, 2), int))
    with pytest.raises(DatasetError, match=f"{path}: labels must be 1-D .*shape \\(3, 2\\)"):
        load_npz(path)


def test_string_labels_and_whole_number_float_labels_work(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (4, 4, 4), dtype=np.uint8)
    ds = load_npz(npz(tmp_path / "s.npz", images=images, labels=np.array(["dog", "cat", "dog", "émeu"])))
    assert ds.class_names == ("cat", "dog", "émeu") and ds.labels.tolist() == [1, 0, 1, 2]
    ds = load_npz(npz(tmp_path / "b.npz", images=images, labels=np.array([b"x", b"y", b"x", b"y"])))
    assert ds.class_names == ("x", "y")
    ds = load_npz(npz(tmp_path / "f.npz", images=images, labels=np.array([2.0, 0.0, 2.0, 0.0])))
    assert ds.class_names == ("0", "2") and ds.labels.tolist() == [1, 0, 1, 0]
    np.testing.assert_array_equal(ds.images[..., 0], images / np.float32(255))


@pytest.mark.parametrize("labels, message", [
    (np.array([0.5, 1.0]), "float labels must be whole numbers.*0.5"),
    (np.array([0.0, np.nan]), "labels contain NaN or inf"),
    (np.array([True, False]), "labels have dtype bool"),
    (np.array([1 + 2j, 0j]), "labels have dtype complex128"),
    (np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[D]"), "labels have dtype datetime64"),
])
def test_labels_of_an_unusable_kind_are_refused(tmp_path, labels, message):
    path = npz(tmp_path / "l.npz", images=np.zeros((2, 4, 4)), labels=labels)
    with pytest.raises(DatasetError, match=f"{path}: {message}"):
        load_npz(path)


def test_empty_dataset_is_refused(tmp_path):
    path = npz(tmp_path / "empty.npz", images=np.zeros((0, 4, 4)), labels=np.zeros(0, int))
    with pytest.raises(DatasetError, match=f"{path}: the dataset is empty \\(images has shape \\(0, 4, 4\\)\\)"):
        load_npz(path)
    (tmp_path / "folder" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no PNG or JPEG images"):
        load_source(str(tmp_path / "folder"))


def test_an_id_that_appears_twice_or_ids_of_the_wrong_length(tmp_path):
    images, labels = np.zeros((3, 4, 4)), [0, 1, 0]
    path = npz(tmp_path / "dup.npz", images=images, labels=labels, ids=np.array(["a", "b", "a"]))
    with pytest.raises(DatasetError, match=f"{path}\\['ids'\\]: id 'a' appears 2 times; ids must be unique"):
        load_npz(path)
    path = npz(tmp_path / "short.npz", images=images, labels=labels, ids=np.array(["a", "b"]))
    with pytest.raises(DatasetError, match="ids must have shape \\(3,\\), one per image, got shape \\(2,\\)"):
        load_npz(path)
    ds = load_npz(npz(tmp_path / "int.npz", images=images, labels=labels, ids=np.array([7, 8, 9])))
    assert list(ds.ids) == ["7", "8", "9"]


def test_npz_that_is_not_an_npz_or_lies_about_its_shape(tmp_path):
    path = tmp_path / "pickle.npz"
    path.write_bytes(pickle.dumps({"images": 1}))
    with pytest.raises(DatasetError, match=f"{path}: not a readable .npz file"):
        load_npz(path)
    path = npz(tmp_path / "missing.npz", pixels=np.zeros((2, 4, 4)))
    with pytest.raises(DatasetError, match="missing array\\(s\\) \\['images', 'labels'\\]; found \\['pixels'\\]"):
        load_npz(path)
    # a header declaring 10^12 bytes over 16 bytes of data: refused before anything is allocated
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as zf:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 10**6)})
        zf.writestr("images.npy", buf.getvalue() + bytes(16))
        buf = io.BytesIO()
        np.save(buf, np.zeros(10**6, np.int64))
        zf.writestr("labels.npy", buf.getvalue())
    with pytest.raises(DatasetError, match="header declares shape \\(1000000, 1000000\\)"):
        load_npz(path)


def test_stratified_split_keeps_a_train_sample_per_class_and_a_test_set():
    labels = np.array([0, 1, 1, 2, 2, 2])
    split = stratified_split(labels, 0.2, 0)  # rounding alone would leave the test set empty
    assert (split == TEST).sum() == 1 and split[labels == 2].tolist().count(TEST) == 1
    for c in (0, 1, 2):
        assert (split[labels == c] == TRAIN).any()
    assert (stratified_split(np.array([0, 1, 2]), 0.5, 0) == TRAIN).all()  # no class can spare one


def test_validate_stops_when_the_test_split_is_empty():
    images = np.random.default_rng(0).random((3, 4, 4, 1)).astype(np.float32)
    ds = Dataset(ids=np.array(["x", "y", "z"], dtype=object), images=images, labels=np.array([0, 1, 2]),
                 class_names=("a", "b", "c"), source="tiny.npz").with_split(0.5, 0)
    with pytest.raises(DatasetError, match="tiny.npz: the test split is empty.*expected at least one test sample"):
        validate(ds, ds.ids_in(TRAIN))


# --------------------------------------------------------------------------------------- property

_DTYPES = st.one_of(
    st.sampled_from([np.uint8, np.uint16, np.int64, np.float32, np.float64]).map(np.dtype),
    hnp.scalar_dtypes(),  # bool, ints, floats, complex, datetime64, timedelta64
    hnp.unicode_string_dtypes(max_len=3),
    hnp.byte_string_dtypes(max_len=3),
)


@st.composite
def _array(draw, shape):
    dtype = draw(_DTYPES)
    if draw(st.sampled_from(range(10))) == 5:  # now and then an object array (np.savez pickles it)
        out = np.empty(shape, dtype=object)
        out.fill(draw(st.one_of(st.integers(), st.text(max_size=2), st.none())))
        return out
    return draw(hnp.arrays(dtype, shape))


_LABELS = st.sampled_from([
    (np.int64, st.integers(-2, 3)), (np.uint8, st.integers(0, 3)), (np.float64, st.integers(0, 3).map(float)),
    (np.dtype("<U2"), st.sampled_from(["a", "b", "ç"])), (np.dtype("S1"), st.sampled_from([b"x", b"y"])),
])


@st.composite
def _npz_contents(draw):
    """Half plausible (right shapes, sensible dtypes: exercises acceptance and validation), half anything."""
    n = draw(st.integers(0, 6))
    if draw(st.booleans()):
        shape = draw(st.sampled_from([(n, 3, 3), (n, 2, 3, 1), (n, 2, 2, 3)]))
        dtype = draw(st.sampled_from([np.uint8, np.uint16, np.int64, np.float32, np.float64, np.bool_]))
        label_dtype, label_values = draw(_LABELS)
        contents = {"images": draw(hnp.arrays(dtype, shape)),
                    "labels": draw(hnp.arrays(label_dtype, (n,), elements=label_values))}
        if draw(st.booleans()):
            contents["ids"] = np.array(draw(st.lists(st.sampled_from("abcdefgh"), min_size=n, max_size=n)))
    else:
        any_shape = hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4)
        image_shape = draw(st.one_of(st.tuples(st.just(n), st.integers(0, 3), st.integers(1, 3)), any_shape))
        contents = {"images": draw(_array(image_shape)),
                    "labels": draw(_array(draw(st.one_of(st.just((n,)), any_shape))))}
        if draw(st.booleans()):
            contents["ids"] = draw(_array(draw(st.one_of(st.just((n,)), any_shape))))
    for key in list(contents):
        if draw(st.sampled_from(range(15))) == 7:  # now and then a required array is missing
            del contents[key]
    return contents


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(contents=_npz_contents(), test_fraction=st.floats(0.05, 0.95))
def test_random_npz_is_accepted_or_refused_with_the_projects_own_error(contents, test_fraction):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.npz"
        np.savez(path, **contents)
        try:
            ds = load_npz(path)
        except PruneError as exc:
            assert str(path) in str(exc)  # every refusal names the file
            return
        assert ds.images.dtype == np.float32 and ds.images.ndim == 4 and len(ds) == len(contents["images"])
        try:
            validate(ds, ds.ids)
            split = ds.with_split(test_fraction, 0)
            validate(split, split.ids_in(TRAIN))
        except PruneError:
            pass


@settings(max_examples=40, deadline=None, database=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_as_npz_raise_the_projects_own_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "junk.npz"
        path.write_bytes(data)
        with pytest.raises(PruneError):
            load_npz(path)
