"""Issue 6: image folders pruned on a schedule and on change, exported, with human overrides."""

import hashlib
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from conftest import FAST_CONFIG

from prune_dagster.core.data.export import write_png_folder
from prune_dagster.core.data.overrides import load_overrides
from prune_dagster.core.errors import DatasetError
from prune_dagster.definitions import defs
from prune_dagster.defs.automation import prune_schedule, source_changed_sensor


@pytest.fixture
def folder(tmp_path, digits):
    """30 digits per class as PNGs in class sub-folders."""
    rng = np.random.default_rng(0)
    pick = np.concatenate([rng.choice(np.flatnonzero(digits.labels == c), 30, replace=False) for c in range(10)])
    root = tmp_path / "images"
    write_png_folder(digits.images[pick], digits.labels[pick], digits.class_names, root,
                     [f"d{i:05d}" for i in pick])
    return root


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(p.relative_to(root).as_posix().encode())
        if p.is_file():
            h.update(p.read_bytes())
            h.update(str(p.stat().st_mtime_ns).encode())
    return h.hexdigest()


def run_prune(source: Path, **extra_ops) -> dg.ExecuteInProcessResult:
    ops = {"raw_dataset": {"config": {"source": str(source)}}, **FAST_CONFIG, **extra_ops}
    with dg.DagsterInstance.get() as instance:
        return defs.resolve_job_def("prune_job").execute_in_process(instance=instance, run_config={"ops": ops})


def evaluate(cursor, instance):
    ctx = dg.build_sensor_context(cursor=cursor, instance=instance)
    result = source_changed_sensor(ctx)
    if isinstance(result, dg.SkipReason):
        return [], cursor
    return list(result.run_requests or []), result.cursor


def test_sensor_watches_the_source_raw_dataset_read_and_new_images_are_pruned(prune_env, folder, digits,
                                                                               monkeypatch):
    monkeypatch.setenv("PRUNE_DATASET", "digits")  # the default; the last run read `folder` instead
    with dg.DagsterInstance.get() as instance:
        assert evaluate(None, instance) == ([], None)  # before any run: built-in digits, nothing to watch
        ops = {"raw_dataset": {"config": {"source": str(folder)}}}
        assert defs.resolve_job_def("prune_job").execute_in_process(
            instance=instance, run_config={"ops": ops}, asset_selection=[dg.AssetKey("raw_dataset")]).success
        requests, cursor = evaluate(None, instance)
        assert requests == [] and str(folder) in cursor  # first look records the files
        requests, cursor = evaluate(cursor, instance)
        assert requests == []  # nothing changed, nothing runs
        new = write_png_folder(digits.images[[1500, 1501, 1502]], digits.labels[[1500, 1501, 1502]],
                               digits.class_names, folder, ["new0", "new1", "new2"])
        requests, cursor = evaluate(cursor, instance)
        assert len(requests) == 1 and requests[0].job_name in (None, "prune_job")
        assert json.loads(requests[0].tags["prune/changes"]) == {"added": 3, "removed": 0, "changed": 0}
        assert requests[0].run_config["ops"]["raw_dataset"]["config"]["source"] == str(folder)  # the same source
        assert evaluate(cursor, instance)[0] == []  # and only once
    result = run_prune(folder)
    assert result.success
    out = Path(prune_env / "out" / "runs" / result.run_id)
    seen = set(pd.read_csv(out / "kept_ids.csv")["id"]) | set(pd.read_csv(out / "ledger.csv")["id"])
    test_ids = set(result.output_for_node("validated").test_ids)
    assert set(new) <= seen | test_ids
    assert len(set(new) & seen) >= 1  # stratified split: most new samples land in training


def test_schedule_requests_prune_job():
    with dg.instance_for_test() as instance:
        ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=None)
        data = prune_schedule.evaluate_tick(ctx)
    assert len(data.run_requests) == 1
    assert prune_schedule.job_name == "prune_job"
    assert prune_schedule.cron_schedule == "0 3 * * *"


def test_export_overrides_and_source_untouched(prune_env, folder):
    before = tree_digest(folder)
    ids = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    overrides = prune_env / "overrides.csv"
    # Pin-keep samples a random 50% prune would partly drop; pin-drop a few.
    from prune_dagster.core.data.sources import load_source

    ds = load_source(str(folder)).with_split(0.2, 0)
    train = list(ds.ids_in("train"))
    keep, drop = train[:40], train[40:43]
    pd.DataFrame({"id": keep + drop, "action": ["keep"] * 40 + ["drop"] * 3}).to_csv(overrides, index=False)
    result = run_prune(folder, validated={"config": {"overrides": str(overrides)}},
                       pruned_dataset={"config": {"strategy": "random", "target_fraction": 0.5}})
    assert result.success
    out = prune_env / "out" / "runs" / result.run_id
    kept = set(pd.read_csv(out / "kept_ids.csv")["id"])
    ledger = pd.read_csv(out / "ledger.csv")
    assert set(keep) <= kept
    assert set(ledger.loc[ledger.reason == "override", "id"]) == set(drop)
    exported = sorted(p.relative_to(out / "dataset").as_posix() for p in (out / "dataset").rglob("*.png"))
    assert exported == sorted(kept)
    for rel in exported[:5]:
        assert (out / "dataset" / rel).read_bytes() == (folder / rel).read_bytes()
    assert tree_digest(folder) == before  # the source is only ever read
    assert len(ids) == 300


def test_npz_export_round_trips(prune_env, digits, tmp_path):
    src = tmp_path / "d.npz"
    np.savez(src, images=(digits.images[:400, ..., 0] * 16).astype(np.uint8), labels=digits.labels[:400])
    result = run_prune(src)
    assert result.success
    out = prune_env / "out" / "runs" / result.run_id
    with np.load(out / "dataset" / "pruned.npz", allow_pickle=False) as z:
        assert set(z["ids"]) == set(pd.read_csv(out / "kept_ids.csv", dtype=str)["id"])
        assert z["labels"].dtype.kind == "i" and z["images"].shape[1:] == (8, 8, 1)


def test_overrides_errors_name_the_file_and_ids(tmp_path):
    path = tmp_path / "overrides.csv"
    train, test = np.array(["a", "b"], dtype=object), np.array(["t"], dtype=object)
    path.write_text("id,action\nzzz,keep\n")
    with pytest.raises(DatasetError, match=r"overrides.csv: 1 id\(s\) not in the dataset.*zzz"):
        load_overrides(path, train, test)
    path.write_text("id,action\nt,drop\n")
    with pytest.raises(DatasetError, match="test split"):
        load_overrides(path, train, test)
    path.write_text("id,action\na,maybe\n")
    with pytest.raises(DatasetError, match="'maybe'"):
        load_overrides(path, train, test)
    path.write_text("id,action\na,keep\nb,DROP\n")
    assert load_overrides(path, train, test) == ({"a"}, {"b"})
