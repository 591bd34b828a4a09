"""Folders of class sub-folders of .txt files: what loads, what each unusable file says, what refuses."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from prune_dagster.core.data import text_folder
from prune_dagster.core.data.text_folder import is_text_folder, load_text_folder
from prune_dagster.core.errors import ConfigError, DatasetError


def write(path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "reviews"
    write(root / "pos" / "a.txt", "A fine film.\n")
    write(root / "pos" / "deeper" / "b.txt", "Great fun.")
    write(root / "neg" / "c.txt", "\ufeffDull and long.")  # UTF-8 with a byte-order mark
    write(root / "neg" / ".hidden.txt", "skipped")
    write(root / "neg" / "notes.md", "not a text file")
    write(root / "README.txt", "not in a class folder")
    return root


def test_loads_ids_labels_classes_and_texts(folder):
    ds = load_text_folder(folder)
    assert ds.kind == "text"
    assert ds.ids.tolist() == ["neg/c.txt", "pos/a.txt", "pos/deeper/b.txt"]
    assert ds.class_names == ("neg", "pos") and ds.labels.tolist() == [0, 1, 1]
    assert ds.texts.tolist() == ["Dull and long.", "A fine film.\n", "Great fun."]
    assert ds.load_errors == {} and ds.source == str(folder.resolve())
    info = ds.load_info
    assert info["format"] == "text_folder" and info["kind"] == "text" and info["n_files"] == 3
    assert set(info["ignored_examples"]) == {"README.txt", "neg/.hidden.txt", "neg/notes.md"}
    assert is_text_folder(folder)


def test_a_file_that_is_not_utf8_is_named_with_its_first_bad_byte(folder):
    write(folder / "neg" / "latin1.txt", "caf\u00e9 ok".encode("latin-1"))
    write(folder / "neg" / "bom_then_bad.txt", b"\xef\xbb\xbfab\xff")
    ds = load_text_folder(folder)
    assert ds.load_errors["neg/latin1.txt"] == "not_utf8: invalid byte 0xe9 at offset 3"
    assert ds.load_errors["neg/bom_then_bad.txt"] == "not_utf8: invalid byte 0xff at offset 5"
    assert ds.texts[ds.index_of(["neg/latin1.txt"])[0]] == ""


def test_a_file_over_the_limit_is_not_read(folder, monkeypatch):
    write(folder / "pos" / "huge.txt", b"x" * 5_000_000)
    opened = []
    real_open = open

    def spy(path, *args, **kwargs):
        opened.append(os.path.basename(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(text_folder, "open", spy, raising=False)  # the module's own `open`
    start = time.perf_counter()
    ds = load_text_folder(folder, max_text_bytes=1000)
    assert time.perf_counter() - start < 2.0
    assert ds.load_errors == {"pos/huge.txt": "too_large: 5000000 bytes (limit 1000); not read"}
    assert "huge.txt" not in opened and "a.txt" in opened
    assert ds.texts[ds.index_of(["pos/huge.txt"])[0]] == ""


def test_symlinks_out_of_the_root_and_broken_ones_are_not_read(folder, tmp_path):
    secret = tmp_path / "secret.txt"
    write(secret, "outside")
    os.symlink(secret, folder / "pos" / "link.txt")
    os.symlink(folder / "neg" / "c.txt", folder / "pos" / "inside.txt")
    os.symlink(tmp_path / "missing.txt", folder / "pos" / "broken.txt")
    ds = load_text_folder(folder)
    assert ds.load_errors["pos/link.txt"].startswith("outside_root: resolves to ")
    assert ds.load_errors["pos/broken.txt"].startswith("broken_symlink:")
    assert "pos/inside.txt" not in ds.load_errors  # a link that stays inside is read
    assert ds.texts[ds.index_of(["pos/inside.txt"])[0]] == "Dull and long."
    assert ds.load_info["load_errors_by_category"] == {"outside_root": 1, "broken_symlink": 1}


def test_an_empty_file_is_an_empty_text_not_an_error(folder):
    write(folder / "neg" / "empty.txt", b"")
    ds = load_text_folder(folder)
    assert "neg/empty.txt" not in ds.load_errors
    assert ds.texts[ds.index_of(["neg/empty.txt"])[0]] == "" and ds.load_info["n_empty_texts"] == 1


def test_dataset_level_problems_name_the_folder(tmp_path):
    root = tmp_path / "d"
    write(root / "loose.txt", "no class folder")
    with pytest.raises(DatasetError, match=r"d: no class sub-folders; expected .*<class name>/<text>\.txt"):
        load_text_folder(root)
    write(root / "a" / "x.md", "markdown")
    with pytest.raises(DatasetError, match=r"d: no \.txt files in its class sub-folder\(s\) \['a'\]"):
        load_text_folder(root)
    write(root / "a" / "x.txt", "one")
    with pytest.raises(DatasetError, match=r"d: only one class folder holds \.txt files \('a'\)"):
        load_text_folder(root)
    write(root / "b" / "y.txt", b"\xff")
    write(root / "a" / "x.txt", b"\xfe")
    with pytest.raises(DatasetError, match=r"none of the 2 \.txt files could be read \(e\.g\. a/x\.txt: not_utf8"):
        load_text_folder(root)
    with pytest.raises(DatasetError, match="not a folder"):
        load_text_folder(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="max_text_bytes=0"):
        load_text_folder(root, max_text_bytes=0)


def test_is_text_folder_refuses_image_folders_and_non_folders(folder, tmp_path):
    assert not is_text_folder(tmp_path / "nowhere")
    assert not is_text_folder(folder / "pos" / "a.txt")
    write(tmp_path / "md" / "a" / "x.md", "markdown only")
    assert not is_text_folder(tmp_path / "md")
    write(folder / "pos" / "picture.png", b"\x89PNG")
    assert not is_text_folder(folder)


def test_labels_follow_sorted_class_names(tmp_path):
    root = tmp_path / "three"
    for k, name in enumerate(["zeta", "alpha", "mid"]):
        for j in range(k + 1):
            write(root / name / f"{j}.txt", f"{name} {j}")
    ds = load_text_folder(root)
    assert ds.class_names == ("alpha", "mid", "zeta")
    assert np.bincount(ds.labels).tolist() == [2, 3, 1]
    assert all(t.startswith(ds.class_names[y]) for t, y in zip(ds.texts, ds.labels, strict=True))
