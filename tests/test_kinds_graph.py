"""Tables and texts through the same graph (issue 21): a CSV table, a JSONL corpus and a folder of .txt
files run through every step and the final model, with planted defects whose right answer is known; the
ledger, summary.json, the metadata and MLflow name the kind; the pruned dataset comes back in the
input's own format; the incremental index decides new rows and texts."""

import json
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import temp_env

from prune_dagster import cli
from prune_dagster.core.data.dataset import content_of
from prune_dagster.core.data.sources import load_source
from prune_dagster.core.incremental import PruneIndex

FAST = ["--set", "trained_model.epochs=4", "--set", "trained_model.log_model=false",
        "--set", "representation.epochs=3", "--set", "representation.min_steps=60"]
WORDS = ("the a film story actor scene plot music camera light night city river house friend letter road "
         "winter summer music voice dream window train garden").split()
CUES = {"pos": "wonderful brilliant moving charming superb".split(), "neg": "dull tedious clumsy awful bland".split()}


def table(tmp: Path, rng: np.random.Generator) -> tuple[Path, dict]:
    n = 900
    g = rng.choice(["x", "y", "z"], n)
    a, b = rng.normal(size=n), np.exp(rng.normal(size=n)) * 1000
    age = rng.integers(18, 80, n).astype(float)
    label = np.where(a + (g == "x") * 1.2 + 0.2 * rng.normal(size=n) > 0.4, "high", "low")
    frame = pd.DataFrame({"id": [f"p{i}" for i in range(n)], "a": a, "b": b, "age": age, "g": g,
                          "h": rng.choice(["u", "v"], n), "label": label})
    src = rng.choice(n, 30, replace=False)
    exact = frame.iloc[src[:10]].assign(id=[f"exact{k}" for k in range(10)])
    near = frame.iloc[src[10:20]].assign(id=[f"near{k}" for k in range(10)])
    near[["a", "b", "age"]] *= 1 + rng.uniform(-0.004, 0.004, (10, 3))
    odd = frame.iloc[src[20:25]].assign(id=[f"odd{k}" for k in range(5)], a=80.0, b=1e9, age=500.0)
    frame = pd.concat([frame, exact, near, odd], ignore_index=True)
    path = tmp / "people.csv"
    frame.to_csv(path, index=False)
    return path, {"exact": dict(zip(exact.id, frame.id[src[:10]], strict=True)),
                  "near": dict(zip(near.id, frame.id[src[10:20]], strict=True)), "odd": list(odd.id)}


def sentence(rng: np.random.Generator, label: str) -> str:
    words = [*rng.choice(WORDS, 10), *rng.choice(CUES[label], 2)]
    rng.shuffle(words)
    return " ".join(words)


def corpus(tmp: Path, rng: np.random.Generator) -> tuple[Path, dict]:
    rows = [{"id": f"s{i}", "text": sentence(rng, lab), "label": lab}
            for i, lab in enumerate(rng.choice(["pos", "neg"], 800))]
    exact, near = {}, {}
    for k, src in enumerate(rng.choice(800, 20, replace=False)):
        text = rows[src]["text"]
        if k < 10:
            rows.append({"id": f"exact{k}", "text": "  " + text.upper() + " ", "label": rows[src]["label"]})
            exact[f"exact{k}"] = rows[src]["id"]
        else:  # one word of twelve changed: Jaccard of the word sets >= 11/13
            words = text.split()
            words[0] = "kaleidoscope"
            rows.append({"id": f"near{k}", "text": " ".join(words), "label": rows[src]["label"]})
            near[f"near{k}"] = rows[src]["id"]
    rows.append({"id": "blank", "text": "   ", "label": "pos"})
    path = tmp / "reviews.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, {"exact": exact, "near": near}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kinds")
    rng = np.random.default_rng(7)
    env = {"DAGSTER_HOME": str(tmp / "home"), "PRUNE_OUTPUT_DIR": str(tmp / "out"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    out = {}
    with temp_env(env):
        (tmp / "home").mkdir()
        for name, (path, truth) in {"table": table(tmp, rng), "text": corpus(tmp, rng)}.items():
            assert cli.main(["run", "--dataset", str(path), *FAST]) == 0
            folder = (tmp / "out" / "latest").resolve()
            out[name] = (path, truth, folder)
    return tmp, out


def removed(folder: Path) -> dict[str, tuple[str, str]]:
    ledger = pd.read_csv(folder / "ledger.csv")
    return {i: (s, r) for i, s, r in zip(ledger["id"], ledger["step"], ledger["reason"], strict=True)}


@pytest.mark.parametrize("kind", ["table", "text"])
def test_planted_copies_are_removed_and_the_kind_is_named(runs, kind):
    tmp, out = runs
    path, truth, folder = out[kind]
    gone = removed(folder)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["kind"] == kind and summary["test_accuracy"] > 0.8
    assert (pd.read_csv(folder / "ledger.csv")["kind"] == kind).all()
    test_ids = set(load_source(str(path)).with_split(0.2, 0).ids_in("test"))
    for copy, source in {**truth["exact"], **truth["near"]}.items():
        if (copy in test_ids and source in test_ids) or (copy in truth["near"] and {copy, source} & test_ids):
            continue  # the test split is never pruned (a near copy across the split is not checked)
        reasons = {gone.get(copy, ("", ""))[1], gone.get(source, ("", ""))[1]}
        wanted = {"exact_duplicate", "duplicate_of_test"} if copy in truth["exact"] else {"near_duplicate"}
        assert reasons & wanted, (copy, source, reasons)
    if kind == "table":
        odd = [i for i in truth["odd"] if i not in test_ids]
        assert all(gone.get(i, ("", ""))[0] == "outliers_removed" for i in odd), {i: gone.get(i) for i in odd}
    else:
        assert gone.get("blank") == ("validated", "empty_text") or "blank" in test_ids
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    run = mlflow.get_run(summary["mlflow_run_id"])
    assert run.data.params["kind"] == kind and run.data.tags["kind"] == kind


def test_the_pruned_dataset_is_written_in_the_inputs_format(runs):
    _, out = runs
    path, _, folder = out["table"]
    kept = set(pd.read_csv(folder / "kept_ids.csv")["id"])
    pruned = pd.read_csv(folder / "dataset" / "pruned.csv")
    assert list(pruned.columns) == list(pd.read_csv(path).columns)  # every column of the source, as written
    assert set(pruned["id"]) == kept
    source_rows = pd.read_csv(path).set_index("id").loc[sorted(kept)]
    pd.testing.assert_frame_equal(pruned.set_index("id").loc[sorted(kept)], source_rows)
    path, _, folder = out["text"]
    lines = (folder / "dataset" / "pruned.jsonl").read_text().splitlines()
    assert {json.loads(line)["id"] for line in lines} == set(pd.read_csv(folder / "kept_ids.csv")["id"])
    assert set(lines) <= set(path.read_text().splitlines())  # each kept line byte for byte


def test_galleries_are_tables_of_rows_and_texts(runs):
    tmp, _ = runs
    with dg.DagsterInstance.from_config(str(tmp / "home")) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("near_deduplicated"))
    meta = event.asset_materialization.metadata
    assert meta["kind"].value == "text"
    text = meta["removed_samples"].value
    assert "| id | label | score | reason | removed sample | kept sample it duplicates |" in text
    assert "kaleidoscope" in text and "near_duplicate" in text  # a removed near copy, shown beside its source


def new_batch(kind: str, content, labels: np.ndarray, rng: np.random.Generator):
    """An exact copy of a kept sample, a near copy of another, and a fresh sample of the first's class."""
    if kind == "table":
        near = content.iloc[[1]].copy()
        near[["a", "b", "age"]] *= 1.003
        fresh = content.iloc[[0]].copy()
        fresh[["a", "b", "age"]] = [[0.5, 700.0, 41.0]]
        rows = pd.concat([content.iloc[[0]], near, fresh], ignore_index=True)
    else:
        words = str(content[1]).split()
        words[-1] = "kaleidoscope"
        fresh = sentence(rng, "pos" if "pos" in str(labels[0]) else "neg")
        rows = np.array([content[0], " ".join(words), fresh], dtype=object)
    return np.array(["new/copy", "new/near", "new/fresh"], dtype=object), rows, labels[[0, 1, 0]]


@pytest.mark.parametrize("kind", ["table", "text"])
def test_new_rows_and_texts_are_decided_against_the_index(runs, kind):
    tmp, out = runs
    path, _, folder = out[kind]
    storage = tmp / "home" / "storage"
    selection = load_stored(storage, "pruned_dataset", folder.name)
    representation = load_stored(storage, "representation", folder.name)
    dataset = load_source(str(path)).with_split(0.2, 0)
    index = PruneIndex.build(dataset, selection, representation)  # the steps' states, nothing recomputed
    pos = dataset.index_of(selection.kept_ids[:2])
    ids, content, labels = new_batch(kind, content_of(dataset, pos), dataset.labels[pos], np.random.default_rng(3))
    result = index.add(ids, content, labels)
    assert result.needs_full_prune == [], result.needs_full_prune
    reason = dict(zip(result.removed["id"], result.removed["reason"], strict=True))
    assert reason.get("new/copy") == "exact_duplicate"
    assert reason.get("new/near") == "near_duplicate"
    assert "new/fresh" in set(result.kept_ids), reason


def load_stored(storage: Path, asset: str, run_id: str):
    """An asset's value as the project's IO manager stored it for the run (arrays memory-mapped back)."""
    import pickle

    from prune_dagster.defs.io import load_arrays, load_states

    path = storage / asset / f"{run_id}.pkl"
    value = pickle.loads(path.read_bytes())
    return load_arrays(value, path) if isinstance(value, dict) else load_states(value)
