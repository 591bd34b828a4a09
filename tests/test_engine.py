"""The `engine` resource on a real Dask cluster: two worker processes on this machine.

The pruning graph (raw_dataset → pruned_dataset) runs on the planted-defect dataset once in-process
and once on the cluster; kept ids, ledger and written files must be identical, and the workers must
have done the blockwise work.
"""

import json
import logging
import socket
import sys
from functools import partial
from pathlib import Path

import cloudpickle
import dagster as dg
import numpy as np
import pandas as pd
import pytest
from conftest import FAST_CONFIG, temp_env
from dask.utils import key_split
from distributed import Client, LocalCluster, get_task_stream

from prune_dagster.core import pipeline
from prune_dagster.core.embedding.pca import flatten, pca_embed
from prune_dagster.core.errors import ConfigError
from prune_dagster.core.infra import parallel
from prune_dagster.core.infra.parallel import ArrayRef, as_array, by_reference, serial_map, split_rows
from prune_dagster.core.steps.label_noise import find_label_issues
from prune_dagster.core.steps.outliers import anomaly_scores
from prune_dagster.defs.engine import ComputeEngine, EngineUnavailableError
from prune_dagster.defs.io import RunScopedIOManager
from prune_dagster.defs.jobs import PRUNE_GRAPH
from prune_dagster.defs.resources import OutputStore

GRAPH = PRUNE_GRAPH[:PRUNE_GRAPH.index("pruned_dataset") + 1]
SOURCE = "dirty-digits"  # digits with seeded duplicates, near duplicates, label flips and outliers
# The steps that send blockwise work at this size (label noise uses its mapper only above
# exact_max_rows = 10k samples: test_scale_paths_match_on_the_cluster covers that path).
BLOCKWISE = ["validated", "exact_deduplicated", "near_deduplicated", "outliers_removed"]
BLOCK_ROWS = 256  # ~1,400 training rows → several work items per step, as a large dataset would have


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.ERROR) as local:
        with Client(local, set_as_default=False) as client:
            yield local, client


@pytest.fixture(scope="module")
def small_blocks():
    """Steps that do not take `block_rows` cut at the module default; shrink it for this module so the
    small dataset still has several blocks (the engine's block_rows covers the steps that do)."""
    saved = {f: f.__defaults__ for f in (parallel.row_blocks, parallel.split_rows)}
    for f in saved:
        f.__defaults__ = (BLOCK_ROWS,)
    yield
    for f, defaults in saved.items():
        f.__defaults__ = defaults


def materialize(tmp: Path, engine: ComputeEngine, graph: list[str] = GRAPH) -> dg.ExecuteInProcessResult:
    from prune_dagster.definitions import defs

    by_key = {a.key.to_user_string(): a for a in defs.assets or ()}
    env = {"DAGSTER_HOME": str(tmp / "dagster_home"), "PRUNE_OUTPUT_DIR": str(tmp / "out"),
           "PRUNE_DATASET": SOURCE, "PRUNE_ENGINE_ADDRESS": ""}
    with temp_env(env):
        (tmp / "dagster_home").mkdir(exist_ok=True)
        (tmp / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        with dg.DagsterInstance.get() as instance:
            return dg.materialize(
                [by_key[k] for k in graph], instance=instance,
                resources={"io_manager": RunScopedIOManager(), "output_store": OutputStore(), "engine": engine},
                run_config={"ops": {k: v for k, v in FAST_CONFIG.items() if k in graph},
                            "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )


def step_metadata(result: dg.ExecuteInProcessResult, step: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == step]
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory, cluster, small_blocks):
    local, client = cluster
    serial = materialize(tmp_path_factory.mktemp("in_process"), ComputeEngine(address="", block_rows=BLOCK_ROWS))
    with get_task_stream(client=client) as stream:
        dask = materialize(tmp_path_factory.mktemp("dask"),
                           ComputeEngine(address=local.scheduler_address, block_rows=BLOCK_ROWS))
    return serial, dask, stream.data


def test_cluster_gives_exactly_the_in_process_kept_ids_and_ledger(both_runs):
    serial, dask, _ = both_runs
    assert serial.success and dask.success
    a, b = serial.output_for_node("pruned_dataset"), dask.output_for_node("pruned_dataset")
    assert len(a.ledger) > 100 and set(a.ledger["step"]) >= {"exact_deduplicated", "near_deduplicated",
                                                              "label_noise_removed"}  # the defects were found
    np.testing.assert_array_equal(a.kept_ids, b.kept_ids)
    pd.testing.assert_frame_equal(a.ledger, b.ledger, check_exact=True)
    np.testing.assert_array_equal(a.feature_mask, b.feature_mask)
    for step in GRAPH[1:]:  # every intermediate selection too, not only the end
        if step == pipeline.REPRESENTATION:  # computed in this process either way: the same arrays
            np.testing.assert_array_equal(serial.output_for_node(step).probs, dask.output_for_node(step).probs)
            continue
        np.testing.assert_array_equal(serial.output_for_node(step).kept_ids, dask.output_for_node(step).kept_ids)
    files = [Path(step_metadata(r, "pruned_dataset")["output_folder"]) for r in (serial, dask)]
    for name in ("kept_ids.csv", "ledger.csv"):
        assert (files[0] / name).read_bytes() == (files[1] / name).read_bytes()


def test_the_workers_did_the_blockwise_work(both_runs, cluster):
    serial, dask, tasks = both_runs
    local, client = cluster
    workers = set(client.nthreads())
    assert len(workers) == 2
    assert tasks, "no task ran on the cluster"
    assert {t["worker"] for t in tasks} == workers  # both worker processes took items
    by_function = pd.Series([key_split(t["key"]) for t in tasks]).value_counts()
    assert by_function.get("pixel_checks", 0) >= 2  # validated's pixel checks, in several row blocks
    meta = step_metadata(dask, "validated")
    assert meta["engine"] == local.scheduler_address and meta["engine_workers"] == 2
    assert meta["engine_tasks"] >= 2
    sent = {s: step_metadata(dask, s).get("engine_tasks", 0) for s in GRAPH}
    assert sum(sent.values()) == len(tasks)
    assert all(sent[s] >= 2 for s in BLOCKWISE), sent  # each step with blockwise work used the cluster
    for step in GRAPH:
        assert step_metadata(serial, step)["engine"] == "in-process"


def work(block: np.ndarray, scale: np.ndarray, offset: float) -> np.ndarray:
    """A work function: module-level, deterministic, large shared argument."""
    if not np.isfinite(block).all():
        raise ValueError("non-finite input")
    return block @ scale + offset


def rows_sum(positions: np.ndarray, images: np.ndarray | ArrayRef) -> np.ndarray:
    return as_array(images)[positions].sum(axis=1)


@pytest.fixture
def engine_on(cluster):
    local, _ = cluster
    # By value: the workers then need not import this test module (and dagster with it) to run `work`.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    engine = ComputeEngine(address=local.scheduler_address)
    engine.start()
    yield engine
    engine.close()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_mapper_is_serial_map_on_the_cluster(engine_on, cluster):
    local, _ = cluster
    mapper = engine_on.mapper()
    x = np.random.default_rng(0).normal(size=(10_000, 64)).astype(np.float32)
    shared = {"scale": np.linspace(0, 1, 64, dtype=np.float32), "offset": 0.5}
    got, want = mapper(work, split_rows(x, 1_000), shared), serial_map(work, split_rows(x, 1_000), shared)
    assert len(got) == 10 and all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
    assert engine_on.tasks_run == 10
    assert mapper(work, [], shared) == []
    x[4_321, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite") as err:
        mapper(work, split_rows(x, 1_000), shared)
    assert any("item 4 of 10" in note and local.scheduler_address in note for note in err.value.__notes__)
    assert ComputeEngine(address="").mapper() is serial_map


def test_memory_mapped_arrays_go_by_path_or_by_value(engine_on, tmp_path, monkeypatch):
    x = np.random.default_rng(1).normal(size=(5_000, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    ref = by_reference(np.load(tmp_path / "x.npy", mmap_mode="r"))
    assert isinstance(ref, ArrayRef)
    items = split_rows(np.arange(len(x))[::-1].copy(), 700)
    want = serial_map(rows_sum, items, {"images": x})
    mapper = engine_on.mapper()
    assert all(np.array_equal(g, w) for g, w in zip(mapper(rows_sum, items, {"images": ref}), want, strict=True))
    assert mapper._visible == {ref.path: True}  # the workers opened the file themselves
    # Workers that cannot see the file (another machine, no shared filesystem) get the bytes instead.
    mapper._visible.clear()
    monkeypatch.setattr(engine_on.client, "run", lambda *a, **k: {"w": FileNotFoundError(ref.path)})
    assert all(np.array_equal(g, w) for g, w in zip(mapper(rows_sum, items, {"images": ref}), want, strict=True))
    assert mapper._visible == {ref.path: False}


@pytest.mark.parametrize("step", ["label_noise", "knn", "lof"])
def test_scale_paths_match_on_the_cluster(engine_on, digits_train, step):
    """The paths a step takes only on large data (models fitted on a sample, rows scored in blocks),
    forced on the digits by small thresholds: the cluster must give exactly the in-process answer."""
    ids, images, labels = digits_train
    if step == "label_noise":
        run = partial(find_label_issues, ids, flatten(images), labels, folds=3, exact_max_rows=300, fit_rows=400,
                      block_rows=128)
        want, got = run(mapper=serial_map), run(mapper=engine_on.mapper())
        assert len(want.removed) > 0
        pd.testing.assert_frame_equal(want.removed, got.removed, check_exact=True)
    else:
        run = partial(anomaly_scores, pca_embed(images, 16, 0), step, reference_rows=300, block_rows=128)
        np.testing.assert_array_equal(run(mapper=serial_map), run(mapper=engine_on.mapper()))
    assert engine_on.tasks_run >= 2


def test_address_forms(cluster, tmp_path, monkeypatch):
    local, client = cluster
    monkeypatch.setenv("PRUNE_ENGINE_ADDRESS", local.scheduler_address)
    engine = ComputeEngine()  # empty: the environment variable
    engine.start()
    assert engine.metadata() == {"engine": local.scheduler_address, "engine_workers": 2}
    engine.close()
    assert ComputeEngine(address="in-process").mapper() is serial_map  # overrides the variable
    # The file `dask scheduler --scheduler-file` writes; its "address" is what clients read.
    # (Client.write_scheduler_file fails here once tasks have run: json cannot encode tuple keys in the metrics.)
    (tmp_path / "scheduler.json").write_text(json.dumps({"type": "Scheduler", "address": local.scheduler_address}))
    engine = ComputeEngine(address=f"scheduler-file:{tmp_path / 'scheduler.json'}")
    engine.start()
    assert engine.metadata()["engine_workers"] == 2
    engine.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_local_mode_starts_a_cluster_for_the_run_and_stops_it(tmp_path, small_blocks):
    result = materialize(tmp_path, ComputeEngine(address="local:2", block_rows=BLOCK_ROWS),
                         ["raw_dataset", "validated"])
    meta = step_metadata(result, "validated")
    assert meta["engine"].startswith("local:2 (tcp://127.0.0.1:") and meta["engine_workers"] == 2
    assert meta["engine_tasks"] >= 2
    scheduler = meta["engine"].split("(")[1].rstrip(")")
    with pytest.raises(OSError):  # torn down with the run
        Client(scheduler, timeout=2, set_as_default=False)


def test_unreachable_scheduler_fails_the_run_naming_it(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(Exception) as err:
        materialize(tmp_path, ComputeEngine(address=address, connect_timeout_s=1), ["raw_dataset"])
    chain, exc = [], err.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__
    assert any(isinstance(e, EngineUnavailableError) and address in str(e) for e in chain), chain


@pytest.mark.parametrize("address", ["carrier-pigeon", "local:0", "local:two"])
def test_malformed_address_is_refused_naming_it(address):
    with pytest.raises(EngineUnavailableError, match=address):
        ComputeEngine(address=address).start()


def test_thread_settings_are_resource_fields_with_environment_defaults(monkeypatch):
    from prune_dagster.core.training import train

    monkeypatch.setenv("PRUNE_BLAS_THREADS", "3")
    monkeypatch.setenv("PRUNE_TORCH_THREADS", "2")
    assert ComputeEngine().blas_limit() == 3 and ComputeEngine(blas_threads=1).blas_limit() == 1
    try:
        with dg.build_resources({"engine": ComputeEngine()}):
            assert train.default_threads() == 2  # torch's threads are process-wide: set once per run
        with dg.build_resources({"engine": ComputeEngine(torch_threads=1)}):
            assert train.default_threads() == 1
    finally:
        train.set_default_threads(0)
    monkeypatch.setenv("PRUNE_BLAS_THREADS", "many")
    with pytest.raises(ConfigError, match="PRUNE_BLAS_THREADS='many': expected a whole number >= 1"):
        ComputeEngine().blas_limit()
