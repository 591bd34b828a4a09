"""The table kind's algorithms (kinds/table*.py) and model (training/table_model.py) on small synthetic tables."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.kinds import table_neighbors
from prune_dagster.core.kinds.table import (
    MAX_CATEGORIES,
    TableSpace,
    canonical_keys,
    near_duplicate_pairs,
    same_rows,
    select_columns,
    smote_rows,
)
from prune_dagster.core.kinds.table_neighbors import log_radius, log_scaled
from prune_dagster.core.training.table_model import TableEncoder


def mixed_table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "amount": rng.lognormal(5, 1, n), "age": rng.integers(18, 90, n).astype(float),
        "score": rng.normal(0, 1, n),
        "city": pd.Categorical(rng.choice(["paris", "oslo", "rome"], n)),
        "tier": pd.Categorical(rng.choice(["a", "b"], n)),
    })


def test_canonical_keys_equal_exactly_for_canonically_equal_rows():
    frame = pd.DataFrame({"x": [0.0, -0.0, np.nan, np.nan, 1.0, 1.0, 0.0],
                          "c": pd.Categorical([" a", "a", None, None, "a", "b", ""])})
    keys = canonical_keys(frame)
    assert keys.shape == (7, 2) and keys.dtype == np.uint64
    same = lambda a, b: bool((keys[a] == keys[b]).all())  # noqa: E731
    assert same(0, 1) and same(2, 3)  # -0.0 == 0.0 with ' a' == 'a'; NaN == NaN with missing == missing
    assert not same(4, 5) and not same(0, 4) and not same(0, 6)  # other category, other number, blank = missing
    assert (keys[:, 0] != keys[:, 1]).all()  # two independent halves, also for numbers
    assert same_rows(frame, np.array([0, 2, 4, 0]), np.array([1, 3, 5, 6])).tolist() == [True, True, False, False]
    # The same rows in another frame (other category order, object dtype) get the same keys.
    other = pd.DataFrame({"x": frame["x"], "c": frame["c"].astype(object)})
    assert (canonical_keys(other) == keys).all()


def test_table_space_encodes_numbers_codes_and_one_hot():
    frame = mixed_table(200)
    frame.loc[3, "score"] = np.nan
    space = TableSpace.fit(frame)
    assert space.numeric_columns == ("amount", "age", "score") and space.indicator_columns == ("score",)
    numeric = space.numeric(frame)
    assert numeric.shape == (200, 4) and numeric.dtype == np.float32
    assert numeric[3, 2] == 0.0 and numeric[3, 3] == 1.0 and numeric[:, 3].sum() == 1.0
    assert abs(float(np.median(numeric[:, 1]))) < 0.05  # centred on the median
    codes = space.codes(frame)
    assert codes.shape == (200, 2) and codes.min() >= 1 and space.cardinalities == (4, 3)
    unseen = frame.head(2).copy()
    unseen["city"] = pd.Categorical(["tokyo", None])
    assert space.codes(unseen)[:, 0].tolist() == [0, 0]  # unseen and missing
    raw = space.raw_features(frame)
    assert raw.shape == (200, 4 + 4 + 3) and (raw[:, 4:].sum(axis=1) == 2).all()
    assert pickle.loads(pickle.dumps(space)) == space


def test_table_space_caps_categories_with_other():
    values = [f"v{k:03d}" for k in range(100)] * 3 + ["v000"] * 10
    space = TableSpace.fit(pd.DataFrame({"c": pd.Categorical(values)}))
    assert len(space.categories[0]) == MAX_CATEGORIES and space.categories[0][0] == "v000"  # most frequent first
    codes = space.codes(pd.DataFrame({"c": ["v000", "v099", "new", None]}))
    assert codes[:, 0].tolist() == [1, MAX_CATEGORIES + 1, MAX_CATEGORIES + 1, 0]


def test_near_duplicate_pairs_finds_jittered_copies_only():
    rng = np.random.default_rng(1)
    frame = mixed_table(300, seed=1)
    frame.loc[0, ["amount", "age", "score"]] = [0.0, 40.0, -3.0]
    planted = {}
    for src, dst in ((0, 300), (5, 301), (9, 302)):
        planted[dst] = frame.loc[src].copy()
        for column in ("amount", "age", "score"):
            planted[dst][column] *= 1 + rng.uniform(-0.01, 0.01)
    other_city = frame.loc[12].copy()
    other_city["city"] = "oslo" if other_city["city"] != "oslo" else "rome"  # numbers equal, category differs
    rows = pd.DataFrame([*planted.values(), other_city])
    frame = pd.concat([frame, rows], ignore_index=True).astype(frame.dtypes.to_dict())
    i, j, meta = near_duplicate_pairs(frame, tolerance=0.02)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 300), (5, 301), (9, 302)]
    assert meta["candidate_pairs"] == 3 and meta["equal_copies"] == 0

    def reverse_map(fn, items, shared=None):
        return [fn(item, **(shared or {})) for item in reversed(items)][::-1]

    i2, j2, _ = near_duplicate_pairs(frame, tolerance=0.02, mapper=reverse_map)
    assert (i2 == i).all() and (j2 == j).all()
    assert len(near_duplicate_pairs(frame, tolerance=0.0)[0]) == 0  # jitter is not equality


def test_near_duplicate_pairs_missing_values_and_equal_copies():
    frame = pd.DataFrame({"x": [1.0, np.nan, np.nan, 1.0, 1.005, 1.0, 1.0, 100.0],
                          "c": pd.Categorical(["a", "a", "a", None, "a", None, "a", "a"])})
    i, j, meta = near_duplicate_pairs(frame, tolerance=0.02)
    pairs = set(zip(i.tolist(), j.tolist(), strict=True))
    # 1 and 2 (both missing x) match; 3 and 5 (both missing c) match; 0, 4, 6 agree within tolerance.
    assert {(1, 2), (3, 5), (0, 4), (0, 6)} <= pairs and (4, 6) not in pairs  # 6 equals 0: paired with 0 only
    assert not any(7 in p for p in pairs) and meta["equal_copies"] == 3  # 2 equals 1, 5 equals 3, 6 equals 0
    with pytest.raises(ConfigError, match="tolerance"):
        near_duplicate_pairs(frame, tolerance=-1.0)


def brute_force_pairs(frame: pd.DataFrame, tolerance: float) -> set[tuple[int, int]]:
    """The definition, pair by pair: then each equal set collapsed to its lowest row, copies paired with it."""
    numbers = frame[["x", "y"]].to_numpy()
    t, state = log_scaled(numbers)
    cats = frame["c"].astype(object).where(frame["c"].notna(), "<missing>").to_numpy()
    n = len(frame)
    near = np.zeros((n, n), dtype=bool)
    equal = np.zeros((n, n), dtype=bool)
    for a in range(n):
        same_group = (cats == cats[a]) & (state == state[a]).all(axis=1)
        distance = np.abs(t - t[a]).max(axis=1)
        near[a] = same_group & (distance <= log_radius(tolerance))
        equal[a] = same_group & (distance == 0)
    first = equal.argmax(axis=1)  # the lowest row equal to each row
    pairs = {(a, int(first[a])) for a in range(n) if first[a] != a}
    reps = np.flatnonzero(first == np.arange(n))
    pairs |= {(int(a), int(b)) for a in reps for b in reps if a < b and near[a, b]}
    return {(min(p), max(p)) for p in pairs}


def test_near_duplicate_pairs_match_brute_force_across_blocks(monkeypatch):
    rng = np.random.default_rng(5)
    n = 400
    x = rng.integers(1, 15, n).astype(float) * (1 + rng.choice([0, 0.004, -0.006, 0.05], n))  # ties and jitter
    frame = pd.DataFrame({"x": x, "y": rng.choice([0.0, 1.0, 1.01, 2.0, np.nan], n),
                          "c": pd.Categorical(rng.choice(["a", "b", None], n))})
    frame.loc[350:359] = frame.loc[0:9].to_numpy()  # exact copies
    frame["c"] = frame["c"].astype("category")
    expected = brute_force_pairs(frame, 0.02)
    i, j, whole = near_duplicate_pairs(frame, tolerance=0.02)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == expected and whole["blocks"] == 1
    monkeypatch.setattr(table_neighbors, "BLOCK_ROWS", 16)
    i2, j2, cut = near_duplicate_pairs(frame, tolerance=0.02)
    assert cut["blocks"] > 10 and cut["context_rows"] > 0 and cut["equal_copies"] == whole["equal_copies"] >= 10
    assert (i2 == i).all() and (j2 == j).all()


def test_smote_rows_returns_new_rows_like_the_frame():
    frame = mixed_table(60, seed=2)
    frame.loc[1, "score"] = np.nan
    frame.loc[2, "city"] = None
    labels = np.array([0] * 50 + [1] * 10)
    new, y = smote_rows(frame, labels, {1: 25}, k_neighbors=5, seed=0)
    assert len(new) == 15 and (y == 1).all() and y.dtype == labels.dtype
    assert list(new.columns) == list(frame.columns) and new.dtypes.to_dict() == frame.dtypes.to_dict()
    for column in ("city", "tier"):
        assert set(new[column].dropna()) <= set(frame.loc[labels == 1, column].dropna())
    assert new[["amount", "age", "score"]].notna().all().all()
    again, _ = smote_rows(frame, labels, {1: 25}, k_neighbors=5, seed=0)
    pd.testing.assert_frame_equal(new, again)  # seeded
    numeric_only, y2 = smote_rows(frame[["amount", "score"]], labels, {1: 12}, k_neighbors=5, seed=0)
    assert len(numeric_only) == 2 and list(numeric_only.columns) == ["amount", "score"] and (y2 == 1).all()
    none, _ = smote_rows(frame, labels, {1: 10}, k_neighbors=5, seed=0)
    assert len(none) == 0 and list(none.columns) == list(frame.columns)


def test_select_columns_drops_constant_and_correlated_columns():
    frame = mixed_table(200, seed=3)
    frame["constant"] = 7.0
    frame["one_city"] = pd.Categorical(["x"] * 200)
    frame["double_amount"] = frame["amount"] * 2 + 1
    labels = (frame["score"] > 0).to_numpy().astype(int)
    kept, meta = select_columns(frame, labels, "variance")
    assert kept == ("amount", "age", "score", "city", "tier", "double_amount")
    assert set(meta["dropped"]) == {"constant", "one_city"}
    kept, meta = select_columns(frame, labels, "correlation", threshold=0.95)
    assert kept == ("amount", "age", "score", "city", "tier") and "double_amount" in meta["dropped"]
    kept, meta = select_columns(frame, labels, "mutual_info", keep_fraction=0.2, seed=0)
    scores = meta["mutual_info"]
    assert len(kept) == 2 and "score" in kept and max(scores, key=scores.get) == "score"
    assert kept == tuple(c for c in frame.columns if c in kept)  # in frame order
    assert select_columns(frame, labels, "none")[0] == tuple(frame.columns)
    with pytest.raises(ConfigError, match="method='variance'"):
        select_columns(frame[["constant"]], labels, "variance")
    with pytest.raises(ConfigError, match="method"):
        select_columns(frame, labels, "pca")


def test_table_mlp_learns_a_rule():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    frame = mixed_table(600, seed=4)
    labels = torch.from_numpy(((frame["score"] > 0) ^ (frame["tier"] == "a")).to_numpy().astype(np.int64))
    encoder = TableEncoder.fit(frame, kept_columns=("score", "tier", "city"))
    x = encoder.tensor(frame)
    assert x.shape == (600, encoder.width) == (600, 1 + 2) and x.dtype == torch.float32
    model = encoder.model(2)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        for batch in torch.randperm(600).split(64):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), labels[batch]).backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == labels).float().mean().item()
        assert model.features(x).shape == (600, 128)
    assert accuracy > 0.9
    assert pickle.loads(pickle.dumps(encoder)).tensor(frame).equal(x)
