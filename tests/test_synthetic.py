"""The scale benchmark's generator: reproducible bytes, the folder format, planted defects that match
their ground truth, and a test split no defect touches."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from prune_dagster.core.errors import ConfigError
from prune_dagster.fixtures.defects import TRUTH_COLUMNS
from prune_dagster.fixtures.synthetic import FILES, ScaleConfig, make_scale_dataset, read_truth

N = 2000


def _digest(folder) -> dict[str, str]:
    return {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in FILES}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = make_scale_dataset(N, tmp_path_factory.mktemp("scale") / "a", seed=0)
    images = np.load(folder / "images.npy")
    ids = np.load(folder / "ids.npy")
    return {"folder": folder, "images": images, "labels": np.load(folder / "labels.npy"), "ids": ids,
            "split": np.load(folder / "split.npy"), "truth": read_truth(folder),
            "row": {sid: i for i, sid in enumerate(ids.tolist())}}


def test_folder_format(made):
    folder = made["folder"]
    header = np.lib.format.read_magic(open(folder / "images.npy", "rb"))
    assert header in ((1, 0), (2, 0))
    assert made["images"].shape == (N, 8, 8, 1) and made["images"].dtype == np.float32
    assert made["images"].min() >= 0.0 and made["images"].max() <= 1.0
    assert made["labels"].shape == (N,) and made["labels"].dtype == np.int64
    assert made["labels"].min() >= 0 and made["labels"].max() <= 9
    assert made["ids"].dtype == np.dtype("<U16") and len(set(made["ids"].tolist())) == N
    assert made["split"].dtype == np.dtype("<U5") and set(made["split"].tolist()) == {"train", "test"}
    assert json.loads((folder / "class_names.json").read_text()) == [str(c) for c in range(10)]
    assert list(pd.read_csv(folder / "truth.csv").columns) == TRUTH_COLUMNS
    prefixes = {sid.split("/")[0] if "/" in sid else sid[0] for sid in made["ids"].tolist()}
    assert prefixes == {"s", "dup", "near", "outlier"}
    # Every class is there, and clean variants of one digit differ (no accidental exact copies).
    assert set(np.bincount(made["labels"], minlength=10).nonzero()[0]) == set(range(10))
    flat = made["images"].reshape(N, -1)
    clean = np.char.startswith(made["ids"], "s")
    assert len(np.unique(flat[clean], axis=0)) == clean.sum()


def test_same_seed_same_bytes_other_seed_other_data(made, tmp_path):
    again = make_scale_dataset(N, tmp_path / "b", seed=0)
    assert _digest(again) == _digest(made["folder"])
    other = make_scale_dataset(N, tmp_path / "c", seed=1)
    assert not np.array_equal(np.load(other / "images.npy"), made["images"])
    assert not read_truth(other).equals(made["truth"])


def test_reuses_a_complete_folder_and_replaces_a_stale_one(made, tmp_path):
    folder = make_scale_dataset(500, tmp_path / "d", seed=0)
    stamp = (folder / "images.npy").stat().st_mtime_ns
    assert make_scale_dataset(500, folder, seed=0) == folder
    assert (folder / "images.npy").stat().st_mtime_ns == stamp  # not rewritten
    make_scale_dataset(500, folder, seed=0, label_noise_rate=0.1)  # other settings: made again
    assert len(read_truth(folder).query("defect == 'label_flip'")) == 50
    other = tmp_path / "not_ours"
    other.mkdir()
    (other / "keep.txt").write_text("user data")
    with pytest.raises(ConfigError, match="not a synthetic dataset"):
        make_scale_dataset(500, other)
    assert (other / "keep.txt").exists()
    with pytest.raises(ConfigError, match="unknown setting"):
        make_scale_dataset(500, tmp_path / "e", outlier_fraction=0.1)


def test_planted_counts_match_the_rates(made):
    cfg = ScaleConfig()
    truth = made["truth"]
    by = truth.groupby("defect").size().to_dict()
    assert by == {"exact_duplicate": round(cfg.exact_duplicate_rate * N),
                  "near_duplicate": round(cfg.near_duplicate_rate * N),
                  "outlier": round(cfg.outlier_rate * N), "label_flip": round(cfg.label_noise_rate * N)}
    kinds = truth.groupby(["defect", "kind"]).size()
    assert set(kinds["near_duplicate"].index) == {"pixel_noise", "shift", "brightness"}
    assert set(kinds["outlier"].index) == {"noise", "inverted", "foreign"}
    assert kinds["near_duplicate"].max() - kinds["near_duplicate"].min() <= 1  # round-robin kinds
    manifest = json.loads((made["folder"] / "synthetic.json").read_text())
    assert manifest["n"] == N and manifest["counts"]["label_flip"] == by["label_flip"]
    # Ids in the truth are the planted ones: added rows are exactly those with a prefix.
    added = set(truth.id[truth.defect != "label_flip"])
    assert added == {sid for sid in made["ids"].tolist() if "/" in sid}
    assert truth.id.is_unique  # one defect per sample


def test_truth_matches_the_pixels_and_labels(made):
    images, labels, row, truth = made["images"], made["labels"], made["row"], made["truth"]
    flipped = set(truth.id[truth.defect == "label_flip"])
    for r in truth.itertuples():
        i = row[r.id]
        assert labels[i] == r.given_label
        if r.defect == "label_flip":
            assert r.given_label != r.true_label and r.id.startswith("s")
            continue
        if r.source_id:
            s = row[r.source_id]
            src = images[s]
            assert r.source_id not in flipped and labels[s] == r.true_label  # copies come from clean labels
        if r.defect == "exact_duplicate":
            assert np.array_equal(images[i], src) and r.given_label == r.true_label
        elif r.kind == "pixel_noise":
            diff = np.abs(images[i] - src)
            assert 0 < diff.max() < 0.06 and r.given_label == r.true_label
        elif r.kind == "brightness":
            lit = src > 0.05
            gain = np.median(images[i][lit & (src < 0.9)] / src[lit & (src < 0.9)])
            assert 0.89 <= gain <= 1.11 and abs(gain - 1) >= 0.045
        elif r.kind == "shift":
            assert any(np.array_equal(images[i], np.roll(src, step, axis=axis)) for axis in (0, 1) for step in (1, -1))
        elif r.kind == "inverted":
            assert np.allclose(images[i], 1.0 - src) and r.given_label == r.true_label
        else:  # noise and foreign outliers belong to no class
            assert r.true_label == -1 and not r.source_id
    # The sources of planted copies are distinct clean samples.
    sources = truth.source_id[truth.source_id != ""]
    assert sources.is_unique and sources.str.startswith("s").all()


def test_test_split_is_clean_stratified_and_untouched(made):
    split, labels, row, truth = made["split"], made["labels"], made["row"], made["truth"]
    touched = set(truth.id) | set(truth.source_id[truth.source_id != ""])
    assert all(split[row[sid]] == "train" for sid in touched)
    test = split == "test"
    assert all(sid.startswith("s") for sid in made["ids"][test].tolist())
    # Stratified: each class holds 20% of its clean rows in the test split, up to rounding.
    clean = np.char.startswith(made["ids"], "s")
    for c in range(10):
        in_class = clean & (labels == c) & ~np.isin(made["ids"], list(truth.id))  # labels unflipped
        frac = (in_class & test).sum() / in_class.sum()
        assert abs(frac - 0.2) < 0.05, (c, frac)
    assert abs(test.sum() / clean.sum() - 0.2) < 0.002


def test_planted_near_duplicates_are_found_and_clean_variants_are_not(made):
    """The property the benchmark relies on: under near_deduplicated's own views and radius, every
    planted near duplicate joins its source and no two clean variants are joined."""
    from prune_dagster.core.steps.near_dup import find_near_duplicates, near_duplicate_views

    train = (made["split"] == "train") & ~np.char.startswith(made["ids"], "dup/")
    ids, images, labels = made["ids"][train].astype(object), made["images"][train], made["labels"][train]
    result = find_near_duplicates(ids, near_duplicate_views(images), labels)
    truth = made["truth"]
    near = truth[truth.defect == "near_duplicate"]
    removed = set(result.removed["id"])
    pairs = {frozenset(p) for p in zip(near.id, near.source_id, strict=True)}
    assert all(len(p & removed) == 1 for p in pairs)  # each planted pair lost exactly one member
    assert removed <= set().union(*pairs)  # and nothing else went


def test_bytes_are_pinned(tmp_path):
    """The benchmark figures were measured on these exact bytes: a refactor of the generator must not
    move one (sha1 of each file, recorded before the generator's helpers moved to planting.py)."""
    folder = make_scale_dataset(5000, tmp_path / "s", seed=2, outlier_rate=0.05)
    got = {f: hashlib.sha1((folder / f).read_bytes()).hexdigest() for f in FILES if f != "synthetic.json"}
    assert got == {
        "class_names.json": "ef97298b91a969606d3c6a4c4cc72e5a40ee319e",
        "ids.npy": "fcbf408e9a58bbaac65a5109bfc93d9270878846",
        "images.npy": "cc6897baa1c4fb8ab3cee4052bd2a20ab5df6779",
        "labels.npy": "0aa0736f4546067fbbf435f93c8b6f6e5c94e76d",
        "split.npy": "c75e7de43ea9232bad00668c4edb90e0fedb4d4d",
        "truth.csv": "19200e74eb8c1fa0b22d8a5f7d13367a0eaf7048",
    }
