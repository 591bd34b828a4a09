"""Incremental pruning: new samples decided against an index of the last full prune.

The old set is a planted-defect synthetic dataset pruned by the real graph; the new batch holds
samples whose right answer is known (fresh clean digits, exact and near copies of kept samples, copies
of test images, noise images, a near-duplicate pair among the new ones). Exact and near-duplicate
decisions are compared with the step functions run on old + new with the same radius.
"""

import json
from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from conftest import FAST_CONFIG, temp_env

from prune_dagster.core.data.dataset import TEST
from prune_dagster.core.data.sources import load_source
from prune_dagster.core.errors import ConfigError
from prune_dagster.core.incremental import PruneIndex
from prune_dagster.core.steps.dedup import find_exact_duplicates
from prune_dagster.core.steps.near_dup import find_near_duplicates, project_views
from prune_dagster.core.steps.outliers import OutlierParams
from prune_dagster.defs.engine import ComputeEngine
from prune_dagster.defs.io import RunScopedIOManager
from prune_dagster.defs.jobs import PRUNE_GRAPH
from prune_dagster.defs.resources import OutputStore
from prune_dagster.fixtures.synthetic import clean_variants, digit_images, make_scale_dataset

GRAPH = PRUNE_GRAPH[:PRUNE_GRAPH.index("pruned_dataset") + 1]
RESOURCES = {"io_manager": RunScopedIOManager(), "output_store": OutputStore(), "engine": ComputeEngine(address="")}


def env_of(tmp):
    return {"DAGSTER_HOME": str(tmp / "home"), "PRUNE_OUTPUT_DIR": str(tmp / "out"),
            "PRUNE_DATASET": str(tmp / "old"), "PRUNE_ENGINE_ADDRESS": "", "PRUNE_INCOMING": str(tmp / "incoming")}


def assets(*keys):
    from prune_dagster.definitions import defs

    by_key = {a.key.to_user_string(): a for a in defs.assets or ()}
    return [by_key[k] for k in keys]


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("incremental")
    folder = make_scale_dataset(3000, tmp / "old", seed=5)
    with temp_env(env_of(tmp)):
        (tmp / "home").mkdir()
        (tmp / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        with dg.DagsterInstance.get() as instance:
            result = dg.materialize(assets(*GRAPH), instance=instance, resources=RESOURCES,
                                    run_config={"ops": {k: v for k, v in FAST_CONFIG.items() if k in GRAPH}})
    assert result.success
    dataset = load_source(str(folder))
    selection = result.output_for_node("pruned_dataset")
    representation = result.output_for_node("representation")  # its fold models decide new samples' labels
    return dataset, selection, PruneIndex.build(dataset, selection, representation), tmp, representation


def new_batch(dataset, selection):
    rng = np.random.default_rng(11)
    digits, digit_labels = digit_images()
    pick = rng.choice(len(digits), 22)
    fresh = clean_variants(digits[pick], rng)[..., None]
    fresh_labels = digit_labels[pick]
    kept = dataset.index_of(selection.kept_ids[rng.choice(len(selection.kept_ids), 10, replace=False)])
    exact = dataset.images[kept[:5]]
    near = np.clip(dataset.images[kept[5:]] + rng.normal(0, 0.003, dataset.images[kept[5:]].shape), 0, 1)
    test = dataset.index_of(dataset.ids_in(TEST)[:2])
    noise = rng.random((3, 8, 8, 1)).astype(np.float32)
    pair = np.clip(fresh[-1:] + rng.normal(0, 0.003, fresh[-1:].shape), 0, 1)  # near copy of a new sample
    images = np.concatenate([fresh, exact, near, dataset.images[test], noise, pair]).astype(np.float32)
    labels = np.concatenate([fresh_labels, dataset.labels[kept], dataset.labels[test], [0, 1, 2],
                             fresh_labels[-1:]])
    kinds = ["fresh"] * 22 + ["exact"] * 5 + ["near"] * 5 + ["test"] * 2 + ["noise"] * 3 + ["pair"]
    ids = np.array([f"new/{k}/{i}" for i, k in enumerate(kinds)], dtype=object)
    return ids, images, labels.astype(np.int64), np.array(kinds)


def test_new_samples_are_decided_against_the_index(pruned):
    dataset, selection, index, _, _ = pruned
    ids, images, labels, kinds = new_batch(dataset, selection)
    result = index.add(ids, images, labels)
    assert result.needs_full_prune == []
    reason = dict(zip(result.removed["id"], result.removed["reason"], strict=True))
    assert all(reason.get(i) == "exact_duplicate" for i in ids[kinds == "exact"])
    assert all(reason.get(i) == "near_duplicate" for i in ids[kinds == "near"])
    assert all(reason.get(i) == "duplicate_of_test" for i in ids[kinds == "test"])
    assert all(i in reason for i in ids[kinds == "noise"])  # outliers (or, failing that, label issues)
    assert reason.get(ids[kinds == "pair"][0]) == "near_duplicate"  # its source is new and kept
    fresh_kept = np.isin(ids[kinds == "fresh"], result.kept_ids).sum()
    assert fresh_kept >= 19, result.removed[result.removed["id"].str.contains("fresh")]


def test_duplicate_decisions_equal_a_full_recompute(pruned):
    dataset, selection, index, _, _ = pruned
    ids, images, labels, kinds = new_batch(dataset, selection)
    result = index.add(ids, images, labels)
    ledger = selection.ledger
    old_exact = np.concatenate([selection.kept_ids, ledger.loc[ledger["step"] != "validated", "id"]])
    old_pos = np.sort(dataset.index_of(old_exact))
    full = find_exact_duplicates(
        np.concatenate([dataset.ids[old_pos], ids]), np.concatenate([dataset.images[old_pos], images]),
        np.concatenate([dataset.labels[old_pos], labels]))
    new_removed = set(full.removed["id"]) & set(ids)
    by_step = result.removed.groupby("step")["id"].apply(set)
    # the test-copy check is separate in the step; everything else must agree exactly
    assert new_removed - set(ids[kinds == "test"]) == by_step["exact_deduplicated"] - set(ids[kinds == "test"])
    assert not set(full.removed["id"]) - set(ids) - set(ledger.loc[ledger["step"] == "exact_deduplicated", "id"])

    near_old = np.concatenate([selection.kept_ids, ledger.loc[~ledger["step"].isin(
        ["validated", "exact_deduplicated"]), "id"]])
    near_pos = np.sort(dataset.index_of(near_old))
    survivors = ~np.isin(ids, list(by_step["exact_deduplicated"]) + list(by_step.get("validated", [])))
    all_images = np.concatenate([dataset.images[near_pos], images[survivors]])
    near = index.of("near_deduplicated")
    views = project_views(all_images, near.basis)
    full_near = find_near_duplicates(np.concatenate([dataset.ids[near_pos], ids[survivors]]), views,
                                     np.concatenate([dataset.labels[near_pos], labels[survivors]]),
                                     radius=near.radius, images=all_images, full_radius=near.full_radius)
    assert set(full_near.removed["id"]) & set(ids) == by_step["near_deduplicated"]
    old_near = set(ledger.loc[ledger["step"] == "near_deduplicated", "id"])
    assert set(full_near.removed["id"]) - set(ids) == old_near  # no old decision changed


def test_a_saved_index_decides_the_same_and_scores_mean_what_the_pipeline_says(pruned, tmp_path):
    dataset, selection, index, _, _ = pruned
    ids, images, labels, kinds = new_batch(dataset, selection)
    loaded = PruneIndex.load(index.save(tmp_path / "index"))
    assert isinstance(loaded.of("near_deduplicated").views, np.memmap)  # the large views stay on disk
    first, again = index.add(ids, images, labels), loaded.add(ids, images, labels)
    pd.testing.assert_frame_equal(first.removed, again.removed)
    assert list(first.kept_ids) == list(again.kept_ids)
    removed = first.removed.set_index("id")
    assert (removed.loc[ids[kinds == "exact"], "score"] >= 2).all()  # group size: the old copy and the new
    outliers = removed[removed["step"] == "outliers_removed"]
    assert len(outliers) and (outliers["score"] > OutlierParams().for_kind("image").z_threshold).all()  # robust z
    near = removed[removed["step"] == "near_deduplicated"]
    assert near["score"].between(0, 1).all()  # median NN distances: a copy lies far closer than a neighbour


def test_the_index_reads_each_step_settings_from_the_prune_record(pruned):
    dataset, selection, _, _, representation = pruned
    missing = replace(selection, history=[r for r in selection.history if r.step != "outliers_removed"])
    with pytest.raises(ConfigError, match="no record of step 'outliers_removed'"):
        PruneIndex.build(dataset, missing, representation)
    typo = [replace(r, config={**r.config, "z_treshold": 3.0}) if r.step == "outliers_removed" else r
            for r in selection.history]
    with pytest.raises(ConfigError, match="outliers_removed"):
        PruneIndex.build(dataset, replace(selection, history=typo), representation)
    # a prune whose near-duplicate step kept the most typical member leaves no state, saying why
    from prune_dagster.core.steps import near_dup
    from prune_dagster.core.steps.base import StepInputs

    sample = replace(selection, kept_ids=selection.kept_ids[:300])
    note = near_dup.run(near_dup.NearDedupParams(keep="most_typical"), StepInputs(dataset, sample)).state_note
    typical = [replace(r, config={**r.config, "keep": "most_typical"}) if r.step == "near_deduplicated" else r
               for r in selection.history]
    states = {**selection.states, "near_deduplicated": note}
    with pytest.raises(ConfigError, match="keep='first'"):
        PruneIndex.build(dataset, replace(selection, history=typical, states=states), representation)


def test_a_conflicting_copy_asks_for_a_full_prune(pruned):
    dataset, selection, index, _, _ = pruned
    pos = dataset.index_of(selection.kept_ids[:1])
    result = index.add(np.array(["new/conflict"], dtype=object), dataset.images[pos],
                       (dataset.labels[pos] + 1) % dataset.n_classes)
    assert result.needs_full_prune and "label" in result.needs_full_prune[0]
    assert len(result.kept_ids) == 0 and result.removed.empty


def test_the_sensor_runs_incremental_job_on_a_new_batch_folder(pruned):
    from prune_dagster.defs.automation import new_samples_sensor

    dataset, selection, _, tmp, _ = pruned
    ids, images, labels, kinds = new_batch(dataset, selection)
    batch = tmp / "incoming" / "batch-001"
    batch.mkdir(parents=True)
    np.save(batch / "images.npy", images)
    np.save(batch / "labels.npy", labels)
    np.save(batch / "ids.npy", ids.astype(str))
    (batch / "class_names.json").write_text(json.dumps(list(dataset.class_names)))
    with temp_env(env_of(tmp)), dg.DagsterInstance.get() as instance:
        first = new_samples_sensor(dg.build_sensor_context(instance=instance))
        [request] = first.run_requests
        again = new_samples_sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert not getattr(again, "run_requests", None)  # a batch is processed once
        from prune_dagster.definitions import defs

        job = defs.resolve_job_def("incremental_job")  # the job the sensor targets, with its own resources
        result = job.execute_in_process(run_config=request.run_config, instance=instance)
    assert result.success
    summary = result.output_for_node("incremental_update")
    assert summary["needs_full_prune"] == [] and summary["n_new"] == len(ids)
    out = tmp / "out" / "runs" / result.run_id
    kept = pd.read_csv(out / "kept_ids.csv")["id"]
    ledger = pd.read_csv(out / "ledger.csv")
    assert set(selection.kept_ids) <= set(kept)  # no old decision changed
    assert set(ids[kinds == "exact"]) <= set(ledger.loc[ledger["step"] == "exact_deduplicated", "id"])
    new_kept = set(kept[kept.str.startswith("new/")])
    assert new_kept and not new_kept & set(ledger["id"])  # kept or in the ledger, never both
    assert len(kept) == len(selection.kept_ids) + summary["n_new_kept"]
