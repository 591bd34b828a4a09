"""A small sweep materialized for real: temporary Dagster home, output folder and SQLite MLflow store.

2 strategies × 2 fractions × 1 seed, short training through run config; the real `sweep_job`
definition over the same asset code the default sweep uses (built with fewer partitions).
"""

import json
import os
from pathlib import Path

import dagster as dg
import mlflow
import nbformat
import numpy as np
import pandas as pd
import pytest
from conftest import temp_env
from nbclient import NotebookClient

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.ledger import Selection
from prune_dagster.core.selection import sweep as core_sweep
from prune_dagster.core.selection.scoring import ScoreParams
from prune_dagster.core.selection.sweep import (
    SweepModelsParams,
    SweepScores,
    SweepTrainer,
    epochs_for,
    infobatch_plan,
    parse_key,
)
from prune_dagster.defs.assets import ingest
from prune_dagster.defs.assets.representation import representation_asset
from prune_dagster.defs.assets.steps import pipeline_assets
from prune_dagster.defs.assets.sweep import (
    SWEEP_PARTITIONS,
    all_partitions_tags,
    build_sweep_assets,
    sweep_fractions,
)
from prune_dagster.defs.engine import ComputeEngine
from prune_dagster.defs.io import RunScopedIOManager
from prune_dagster.defs.jobs import sweep_job
from prune_dagster.defs.resources import MlflowResource, OutputStore

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES, FRACTIONS = ("random", "el2n"), (0.2, 1.0)
RUN_CONFIG = {"ops": {"sweep_scores": {"config": {"score_epochs": 2, "score_seeds": 1}},
                      "sweep_models": {"config": {"n_seeds": 1, "epochs": 4, "sweep_id": "test-sweep"}}}}


def test_epochs_for_keeps_optimisation_steps_or_epochs():
    # full data 1000 samples, batch 64: 16 steps/epoch, 20 epochs = 320 steps
    assert epochs_for(1000, 1000, 20, 64, "same_steps") == 20
    assert epochs_for(100, 1000, 20, 64, "same_steps") == 160  # 2 steps/epoch → 160 epochs = 320 steps
    assert epochs_for(150, 1000, 20, 64, "same_steps") == 107  # 3 steps/epoch → 321 steps, under one epoch over
    assert epochs_for(100, 1000, 20, 64, "same_epochs") == 20
    with pytest.raises(ConfigError, match="schedule"):
        epochs_for(100, 1000, 20, 64, "same_time")


def test_default_partitions_and_env_fractions(monkeypatch):
    assert len(SWEEP_PARTITIONS.get_partition_keys()) == 8 * 10  # six static strategies + semdedup + infobatch
    assert parse_key("0.1|prototype_easy") == ("prototype_easy", 0.1)
    for fraction in (0.5, 0.7, 0.9):  # infobatch's prune ratio is set so its sample passes fall as the fraction does
        ratios = [infobatch_plan(f, 1000, 20).prune_ratio for f in (fraction, fraction + 0.05)]
        assert 0 < ratios[1] < ratios[0] < 1
    assert infobatch_plan(1.0, 1000, 20).prune_ratio == 0.0
    monkeypatch.setenv("PRUNE_SWEEP_FRACTIONS", "0.5, 0.25,1")
    assert sweep_fractions() == (0.25, 0.5, 1.0)
    monkeypatch.setenv("PRUNE_SWEEP_FRACTIONS", "0.5,2")
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        sweep_fractions()


class HalfPlan:
    """A stand-in dynamic plan: every epoch visits the first half of the training set."""

    def __init__(self, n):
        self.n = n

    def plan(self, epoch, n_epochs, rng):
        half = np.arange(self.n // 2)
        return half, np.ones(len(half), dtype=np.float32)

    def update(self, indices, losses, epoch):
        pass


def test_trainer_selection_sharing_schedule_and_dynamic_hook(digits, monkeypatch):
    data = digits.with_split(0.2, 0)
    selection = Selection(kept_ids=data.ids_in("train"), test_ids=data.ids_in("test"),
                          n_train_split=len(data.ids_in("train")))
    n = len(selection.kept_ids)
    labels = data.labels[np.sort(data.index_of(selection.kept_ids))]
    scores = SweepScores(ids=data.ids[np.sort(data.index_of(selection.kept_ids))], labels=labels,
                         scores={"el2n": np.linspace(0, 1, n)}, score_config=ScoreParams(), seed=0)
    monkeypatch.setitem(core_sweep.EPOCH_PLANS, "half", lambda fraction, n_train, epochs: HalfPlan(n_train))
    trainer = SweepTrainer(data, selection, scores, SweepModelsParams(epochs=1, n_seeds=2))
    # random draws a different subset per seed; a score-based one keeps its ranking
    assert not np.array_equal(trainer.kept("random", 0.2, 0), trainer.kept("random", 0.2, 1))
    assert np.array_equal(trainer.kept("el2n", 0.2, 0), trainer.kept("el2n", 0.2, 1))
    assert abs(len(trainer.kept("el2n", 0.2, 0)) - 0.2 * n) <= 10  # per-class rounding
    full_random, full_el2n = trainer.train("random", 1.0, 0), trainer.train("el2n", 1.0, 0)
    assert not full_random.shared and full_el2n.shared and trainer.n_trained == 1
    assert full_el2n.metrics == full_random.metrics
    small = trainer.train("el2n", 0.2, 0)  # same_steps: ~5x the epochs, about the same optimisation steps
    assert small.epochs >= 4 and abs(small.metrics["optimizer_steps"] / full_random.metrics[
        "optimizer_steps"] - 1) < 0.25
    assert small.n_kept == len(trainer.kept("el2n", 0.2, 0))
    assert small.metrics["kept_fraction_of_cleaned"] == pytest.approx(small.n_kept / n, abs=1e-6)
    assert small.metrics["sample_pass_fraction"] == 1.0 and small.metrics["target_fraction"] == 0.2
    dyn = trainer.train("half", 0.5, 0)  # every sample kept, half the passes made
    assert dyn.metrics["n_train"] == n and dyn.n_kept == n  # n_kept counts samples, not work (was undercounted)
    assert dyn.metrics["kept_fraction_of_cleaned"] == 1.0
    assert dyn.metrics["sample_pass_fraction"] == pytest.approx(0.5, abs=0.01)
    # one meaning: retained_fraction is the kept share of the training split, whatever the strategy
    for run in (small, dyn):
        assert run.metrics["retained_fraction"] == run.metrics["kept_fraction_of_train"]
        assert run.metrics["kept_fraction_of_train"] == pytest.approx(run.n_kept / selection.n_train_split, abs=1e-6)


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    env = {"PRUNE_OUTPUT_DIR": str(tmp / "out"), "MLFLOW_TRACKING_URI": uri, "PRUNE_DATASET": "digits",
           "DAGSTER_HOME": str(tmp / "dagster_home")}
    with temp_env(env):
        Path(env["DAGSTER_HOME"]).mkdir()
        sweep_assets = build_sweep_assets(STRATEGIES, FRACTIONS)
        # Definitions resolve inside the instance's context: it supplies the state storage Dagster
        # reads while loading, so a context another test left behind cannot leak in.
        with dg.DagsterInstance.get() as instance:
            defs = dg.Definitions(
                assets=[*dg.load_assets_from_modules([ingest]), *pipeline_assets(), representation_asset(),
                        *sweep_assets],
                jobs=[sweep_job],
                resources={"mlflow": MlflowResource(), "output_store": OutputStore(),
                           "io_manager": RunScopedIOManager(),
                           "engine": ComputeEngine()},
            )
            job = defs.resolve_job_def("sweep_job")
            result = job.execute_in_process(instance=instance, run_config=RUN_CONFIG,
                                            tags=all_partitions_tags(job.partitions_def))
            yield tmp, result, job


def model_runs() -> pd.DataFrame:
    return mlflow.search_runs(search_all_experiments=True,
                              filter_string="tags.sweep_id = 'test-sweep' and tags.dagster_asset = 'sweep_models'")


def test_one_run_covers_every_partition(sweep_run):
    tmp, result, job = sweep_run
    assert result.success
    assert [r.dagster_run.run_id for r in dg.DagsterInstance.get().get_run_records()] == [result.run_id]
    keys = set(job.partitions_def.get_partition_keys())
    assert len(keys) == 4
    done = dg.DagsterInstance.get().get_materialized_partitions(dg.AssetKey("sweep_models"))
    assert done == keys
    # upstream cleaning chain ran in the same run
    assert dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey("features_selected")) is not None


def test_one_mlflow_run_per_model_with_params_metrics_and_tags(sweep_run):
    tmp, result, _ = sweep_run
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    runs = model_runs()
    assert len(runs) == 4  # 2 strategies × 2 fractions × 1 seed
    for m in ("test_accuracy", "retained_fraction", "n_train", "train_seconds", "optimizer_steps",
              "target_fraction", "kept_fraction_of_train", "kept_fraction_of_cleaned", "sample_pass_fraction"):
        assert runs[f"metrics.{m}"].notna().all(), m
    assert (runs["metrics.retained_fraction"] == runs["metrics.kept_fraction_of_train"]).all()
    assert set(runs["params.strategy"]) == set(STRATEGIES) and set(runs["params.seed"]) == {"0"}
    assert set(runs["tags.dagster_partition"]) == {"0.2|random", "0.2|el2n", "1.0|random", "1.0|el2n"}
    assert set(runs["tags.dagster_run_id"]) == {result.run_id}
    assert (runs["metrics.test_accuracy"] > 0.5).all()
    # same_steps: the 0.2 models ran ~5× the epochs of full data for about the same optimisation steps
    small, full = runs[runs["params.fraction"] == "0.2"], runs[runs["params.fraction"] == "1.0"]
    assert (small["params.epochs"].astype(int) > 4 * full["params.epochs"].astype(int).max()).all()
    steps = runs["metrics.optimizer_steps"]
    assert steps.max() / steps.min() < 1.25
    # at 1.0 both strategies train on the same set: one model, two runs, the second tagged
    assert full["metrics.test_accuracy"].nunique() == 1
    assert full["tags.shared_model_of"].notna().sum() == 1
    # each run spans the training it records, not only its logging (runs of 20–90 ms before)
    trained = runs[runs["tags.shared_model_of"].isna()]
    span = (trained["end_time"] - trained["start_time"]).dt.total_seconds()
    assert (span >= trained["metrics.train_seconds"] - 1e-3).all()
    assert set(runs["params.augment"]) == {"none"} and set(runs["params.max_shift"]) == {"2"}


def test_search_runs_filters_by_fraction_and_strategy(sweep_run):
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    found = mlflow.search_runs(search_all_experiments=True,
                               filter_string="metrics.kept_fraction_of_cleaned <= 0.3 and params.strategy = 'random'")
    assert len(found) == 1
    row = found.iloc[0]
    assert row["tags.dagster_partition"] == "0.2|random"
    assert row["metrics.kept_fraction_of_cleaned"] == pytest.approx(0.2, abs=0.01)
    # the external check's metric: the same model found by retained_fraction (kept / training split)
    by_retained = mlflow.search_runs(search_all_experiments=True,
                                     filter_string="metrics.retained_fraction <= 0.3 and params.strategy = 'random'")
    assert list(by_retained["run_id"]) == list(found["run_id"])
    assert row["metrics.retained_fraction"] <= row["metrics.kept_fraction_of_cleaned"]  # cleaning removed some


def test_pruning_report_csv_recommendation_and_figure(sweep_run):
    tmp, result, _ = sweep_run
    folder = tmp / "out" / "runs" / result.run_id
    table = pd.read_csv(folder / "pruning_report.csv")
    assert len(table) == 4 and {"auc", "within_tolerance", "is_recommended"} <= set(table.columns)
    summary = json.loads((folder / "pruning_report.json").read_text())
    rec = summary["recommendation"]
    assert rec["fraction"] in FRACTIONS and rec["strategy"] in STRATEGIES
    hit = table[table["is_recommended"]]
    assert len(hit) == 1 and hit.iloc[0]["fraction"] == rec["fraction"] and hit.iloc[0]["strategy"] == rec["strategy"]
    full = table[table["fraction"] == 1.0]["mean_accuracy"].mean()
    assert rec["full_accuracy"] == pytest.approx(full)
    assert hit.iloc[0]["mean_accuracy"] >= full - 0.002 - 1e-9
    # the figure: logged to the MLflow summary run and shown in the asset's metadata
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    summary_run = mlflow.get_run(summary["mlflow_run_id"])
    assert summary_run.data.metrics["recommended_fraction"] == rec["fraction"]
    assert "test_accuracy" not in summary_run.data.metrics  # not mistaken for a model run
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(summary_run.info.run_id)}
    assert {"accuracy_vs_retained_fraction.png", "pruning_report.csv"} <= artifacts
    event = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey("pruning_report"))
    meta = event.asset_materialization.metadata
    assert meta["figure"].value.startswith("![accuracy against retained fraction](data:image/png;base64,")
    assert meta["recommended_fraction"].value == rec["fraction"]
    # per-partition results are readable JSON beside the report
    assert len(list((folder / "sweep_models").glob("*.json"))) == 4


def test_pruning_report_against_compute(sweep_run):
    """Compute per cell in pruning_report.csv, the accuracy-against-compute figure beside the report, in the
    summary MLflow run and the asset's metadata, and a recommendation that is the cheapest cell within 0.2
    points of full data."""
    tmp, result, _ = sweep_run
    folder = tmp / "out" / "runs" / result.run_id
    table = pd.read_csv(folder / "pruning_report.csv")
    assert table["compute_seconds"].notna().all() and (table["compute_seconds"] > table["train_seconds"]).all()
    assert (table["compute_sample_passes"] > 0).all()
    # each cell's compute = cleaning chain + representation + its score (none for random) + mean training
    scores = dg.DagsterInstance.get().get_latest_materialization_event(
        dg.AssetKey("sweep_scores")).asset_materialization.metadata
    shared = scores["cleaning_seconds"].value + scores["representation_seconds"].value
    assert scores["cleaning_seconds"].value > 0 and scores["representation_seconds"].value > 0
    for path in (folder / "sweep_models").glob("*.json"):
        r = json.loads(path.read_text())
        scoring = 0.0 if r["strategy"] == "random" else scores["seconds_by_score"].value[r["strategy"]]
        assert r["compute_seconds"] == pytest.approx(shared + scoring + np.mean(r["train_seconds"]), abs=2e-3)
    # the rule, read back from the CSV: the cheapest cell within 0.2 points of full data
    full = table[table["fraction"] == 1.0]
    within = table[table["mean_accuracy"] >= full["mean_accuracy"].mean() - 0.002 - 1e-9]
    hit = table[table["is_recommended"]].iloc[0]
    assert hit["compute_seconds"] == within["compute_seconds"].min()
    png = (folder / "accuracy_vs_compute.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    summary = json.loads((folder / "pruning_report.json").read_text())
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    run = mlflow.get_run(summary["mlflow_run_id"])
    assert "accuracy_vs_compute.png" in {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert run.data.metrics["recommended_compute_seconds"] == pytest.approx(hit["compute_seconds"])
    # "no pruning": the fraction 1.0 training alone (no cleaning, representation or scoring)
    assert run.data.metrics["full_data_compute_seconds"] == pytest.approx(full["train_seconds"].mean())
    assert summary["recommendation"]["compute_seconds"] == pytest.approx(hit["compute_seconds"])
    meta = dg.DagsterInstance.get().get_latest_materialization_event(
        dg.AssetKey("pruning_report")).asset_materialization.metadata
    assert meta["compute_figure"].value.startswith("![accuracy against total compute](data:image/png;base64,")


def test_results_table_and_counts(sweep_run):
    """The results metadata keeps partition keys whole (they hold '|'), and n_kept counts samples."""
    tmp, result, _ = sweep_run
    event = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey("sweep_models"))
    table = event.asset_materialization.metadata["results"].value
    rows = {r.data["partition"]: r.data for r in table.records}
    assert set(rows) == {"0.2|random", "0.2|el2n", "1.0|random", "1.0|el2n"}
    results = json.loads((tmp / "out" / "runs" / result.run_id / "sweep_models" / "0.2__el2n.json").read_text())
    assert results["n_kept"] == round(results["kept_fraction_of_cleaned"] * results["n_clean"])
    assert results["retained_fraction"] == results["kept_fraction_of_train"] <= results["kept_fraction_of_cleaned"]
    assert rows["0.2|el2n"]["n_kept"] == results["n_kept"] and results["target_fraction"] == 0.2


def test_notebook_shows_the_sweep(sweep_run):
    tmp, _, _ = sweep_run
    nb = nbformat.read(ROOT / "notebooks" / "accuracy_vs_retained_fraction.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "4 evaluated runs" in outputs and "sweep test-sweep" in outputs
    assert (tmp / "out" / "accuracy_vs_retained_fraction.png").stat().st_size > 1000


def test_every_materialization_names_the_dataset_and_job(sweep_run):
    """Issue 14 (5): each asset of the sweep run says which dataset (and digest) it saw, and that sweep_job
    made it (the checks: tests/test_settings.py)."""
    _, result, _ = sweep_run
    instance = dg.DagsterInstance.get()
    digest = None
    events = [e for e in instance.all_logs(result.run_id) if e.dagster_event is not None]
    mats = [e.dagster_event.event_specific_data.materialization for e in events
            if e.dagster_event.event_type_value == "ASSET_MATERIALIZATION"]
    assert {m.asset_key.path[-1] for m in mats} >= {"raw_dataset", "representation", "near_deduplicated",
                                                   "sweep_scores", "sweep_models", "pruning_report"}
    for mat in mats:
        meta = mat.metadata
        assert meta["dataset"].value == "digits", mat.asset_key
        assert meta["job_name"].value == "sweep_job", mat.asset_key
        digest = digest or meta["dataset_digest"].value
        assert meta["dataset_digest"].value == digest, mat.asset_key
