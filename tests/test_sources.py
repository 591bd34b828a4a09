"""The image-folder source: ids, class names, channel layout, size, options, and a source left untouched."""

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prune_dagster.core.data.sources import load_image_folder, load_source, scan_image_folder
from prune_dagster.core.errors import ConfigError, DatasetError


def save(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def gray(seed: int, h: int = 8, w: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every path below root (links not followed) → (content hash, mtime_ns, mode)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else ""
            out[p.relative_to(root).as_posix()] = (digest, st.st_mtime_ns, st.st_mode)
    return out


@pytest.fixture
def gray_folder(tmp_path):
    root = tmp_path / "ds"
    arrays = {}
    for rel, seed in [("cat/1.png", 1), ("cat/0.png", 0), ("dog/a.png", 2), ("dog/sub/b.png", 3)]:
        arrays[rel] = gray(seed)
        save(root / rel, arrays[rel])
    return root, arrays


def test_ids_are_posix_relative_paths_and_classes_come_from_sub_folders(gray_folder):
    root, arrays = gray_folder
    ds = load_image_folder(root)
    assert list(ds.ids) == ["cat/0.png", "cat/1.png", "dog/a.png", "dog/sub/b.png"]  # sorted, nested kept
    assert ds.class_names == ("cat", "dog")
    assert ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.source == str(root.resolve())
    assert ds.load_errors == {}
    assert ds.images.shape == (4, 8, 8, 1) and ds.images.dtype == np.float32
    for i, sid in enumerate(ds.ids):  # 8-bit grey → exactly value / 255
        np.testing.assert_array_equal(ds.images[i, ..., 0], arrays[sid].astype(np.float32) / 255)
    assert ds.load_info["channel_layout"] == "L" and ds.load_info["size"] == [8, 8]
    assert load_image_folder(root).digest() == ds.digest()  # deterministic


def test_one_colour_image_makes_every_image_rgb(gray_folder):
    root, arrays = gray_folder
    rgb = np.random.default_rng(9).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    save(root / "dog" / "colour.png", rgb)
    ds = load_image_folder(root)
    assert ds.images.shape == (5, 8, 8, 3) and ds.load_info["channel_layout"] == "RGB"
    grey = ds.images[list(ds.ids).index("cat/0.png")]
    for c in range(3):  # a grey image is replicated into the three channels
        np.testing.assert_array_equal(grey[..., c], arrays["cat/0.png"] / np.float32(255))
    np.testing.assert_array_equal(ds.images[list(ds.ids).index("dog/colour.png")], rgb / np.float32(255))


def test_grey_palette_png_stays_grey_and_colour_palette_is_rgb(tmp_path):
    root = tmp_path / "ds"
    save(root / "a" / "x.png", gray(0))
    (root / "b").mkdir()
    Image.fromarray(gray(1)).convert("P").save(root / "b" / "p.png")  # a palette of greys only
    grey = load_image_folder(root)
    assert grey.load_info["modes"] == {"L": 1, "P": 1} and grey.load_info["channel_layout"] == "L"
    np.testing.assert_array_equal(grey.images[1, ..., 0], gray(1) / np.float32(255))
    colour = Image.fromarray(np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    colour.convert("P", palette=Image.Palette.ADAPTIVE).save(root / "b" / "q.png")
    assert load_image_folder(root).load_info["channel_layout"] == "RGB"


def test_jpeg_loads_and_exif_rotation_is_applied(tmp_path):
    root = tmp_path / "ds"
    save(root / "a" / "x.jpg", gray(0, 8, 8), quality=95)
    tall = np.zeros((4, 8), np.uint8)  # stored 8 wide x 4 high, EXIF says rotate 90°
    exif = Image.Exif()
    exif[0x0112] = 6
    save(root / "b" / "rotated.jpeg", tall, exif=exif)
    save(root / "b" / "y.JPG", gray(1, 8, 8), quality=95)  # suffixes are case-insensitive
    ds = load_image_folder(root, size=(8, 8))
    assert list(ds.ids) == ["a/x.jpg", "b/rotated.jpeg", "b/y.JPG"]
    assert ds.load_errors == {}
    assert np.abs(ds.images[0, ..., 0] * 255 - gray(0)).mean() < 4  # JPEG is lossy, but close
    assert ds.load_info["sizes"] == {"8x8": 2, "4x8": 1}  # the rotated one is 4 wide, 8 high


def test_size_option_is_width_by_height_and_resizes(gray_folder):
    root, _ = gray_folder
    ds = load_image_folder(root, size=(4, 6))
    assert ds.images.shape == (4, 6, 4, 1)
    assert ds.load_info["size_from"] == "option" and ds.load_info["n_resized"] == 4
    assert np.isfinite(ds.images).all() and ds.images.min() >= 0 and ds.images.max() <= 1


def test_load_source_passes_folder_options_and_checks_them(gray_folder, caplog):
    root, _ = gray_folder
    assert load_source(str(root), size=[4, 4]).images.shape == (4, 4, 4, 1)
    with pytest.raises(ConfigError, match="unknown source option.*'colour'"):
        load_source(str(root), colour="rgb")
    with pytest.raises(ConfigError, match="on_size_mismatch='crop'"):
        load_source(str(root), on_size_mismatch="crop")
    with pytest.raises(ConfigError, match="size=\\(0, 4\\)"):
        load_source(str(root), size=(0, 4))
    with pytest.raises(ConfigError, match="alpha='grey'"):
        load_source(str(root), alpha="grey")
    with caplog.at_level(logging.WARNING):
        assert load_source("digits", size=(4, 4)).image_shape == (8, 8, 1)  # not a folder: option ignored, said
    assert "ignored" in caplog.text


def test_progress_is_logged_and_reported(gray_folder, caplog):
    root, _ = gray_folder
    seen = []
    with caplog.at_level(logging.INFO, logger="prune_dagster.core.data"):
        load_image_folder(root, progress_every=2, progress=lambda phase, i, n: seen.append((phase, i, n)))
    assert seen == [("scanned", 2, 4), ("scanned", 4, 4), ("decoded", 2, 4), ("decoded", 4, 4)]
    assert "decoded 4 / 4 images" in caplog.text


def test_folder_without_classes_or_images_names_the_folder(tmp_path):
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load_image_folder(tmp_path)
    save(tmp_path / "loose.png", gray(0))  # an image in the root is not in any class
    (tmp_path / "a").mkdir()
    with pytest.raises(DatasetError, match=f"{tmp_path.resolve()}: no PNG or JPEG images"):
        load_image_folder(tmp_path)
    assert scan_image_folder(tmp_path).ignored == {"loose.png": "not in a class folder"}
    with pytest.raises(DatasetError, match="not a folder"):
        load_image_folder(tmp_path / "loose.png")


def test_source_is_never_modified(tmp_path):
    """Hashes, mtimes and the listing of the source are the same after loading, bad files included."""
    root = tmp_path / "ds"
    save(root / "a" / "x.png", gray(0))
    save(root / "a" / "rgba.png", np.full((8, 8, 4), 100, np.uint8))
    save(root / "b" / "big.png", gray(1, 16, 16))
    (root / "b" / "zero.png").write_bytes(b"")
    (root / "b" / "notes.txt").write_text("keep me")
    (root / "empty").mkdir()
    before = snapshot(root)
    for kwargs in ({}, {"on_size_mismatch": "reject"}, {"size": (4, 4), "alpha": "drop"}):
        load_image_folder(root, **kwargs)
    assert snapshot(root) == before
