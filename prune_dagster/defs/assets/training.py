"""Stage `training`: the kind's model on the pruned data (the document's CNN for images, the MLP for
tables, the text CNN for texts), evaluated on the untouched test split."""


import json
import time
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from prune_dagster.core.data.dataset import Dataset, content_of
from prune_dagster.core.data.export import write_ledger, write_summary
from prune_dagster.core.ledger import Selection, StepResult, removed_frame
from prune_dagster.core.selection.dynamic import DynamicParams, make_epoch_plan
from prune_dagster.core.selection.fractions import selection_fractions
from prune_dagster.core.steps.balance import BalanceParams, loss_weights
from prune_dagster.core.training.augment import AugmentParams
from prune_dagster.core.training.final import TrainedModel, train_final
from prune_dagster.core.training.inputs import training_content, training_ids
from prune_dagster.core.training.train import TrainParams, default_threads
from prune_dagster.defs import cache
from prune_dagster.defs.assets.common import dataset_metadata, to_metadata
from prune_dagster.defs.comparison import update_dataset_comparison
from prune_dagster.defs.config import dagster_config
from prune_dagster.defs.io import RunScopedIOManager
from prune_dagster.defs.resources import DatasetInput, MlflowResource, OutputStore, model_name
from prune_dagster.defs.summary import compute_summary, selection_summary


class TrainedModelConfig(dagster_config(TrainParams), dagster_config(DynamicParams), dagster_config(AugmentParams)):
    """How trained_model trains the CNN: the core TrainParams, DynamicParams and AugmentParams (one
    definition each; being config fields they are logged as MLflow params), plus whether the model
    itself is logged. `threads` 0: the process default."""

    log_model: bool = Field(True, description="Log the model to MLflow (with signature and input example).")


def strategy_name(selection: Selection, config: DynamicParams) -> str:
    """e.g. `el2n`, `el2n+infobatch`, `infobatch+feedback` (static step off), or `none` (`config`: the
    dynamic settings resolved for the kind)."""
    record = selection.record("pruned_dataset")
    static = record is not None and record.config.get("enabled", True) and record.config.get("target_fraction",
                                                                                              1.0) < 1.0
    parts = [record.config["strategy"]] if static else []  # at 1.0 the score step kept everything
    if config.dynamic != "none":
        parts += [config.dynamic] + (["feedback"] if config.feedback else [])
    return "+".join(parts) or "none"


def step_params(selection: Selection) -> dict[str, str]:
    params = {}
    for record in selection.history:
        for key, value in record.config.items():
            params[f"{record.step}.{key}"] = str(value)
    return params


def class_weights_of(selection: Selection, labels: np.ndarray, n_classes: int,
                     kind: str = "image") -> np.ndarray | None:
    """The loss weights class_balanced asked for (`sampler: class_weight` in its recorded config, or a
    text set's over-sampler), else None."""
    record = selection.record("class_balanced")
    return None if record is None else loss_weights(BalanceParams.model_validate(record.config), labels, n_classes,
                                                    kind)


def weight_params(weights: np.ndarray | None) -> dict[str, str]:
    """`class_weights` as one comma-separated MLflow param / metadata value (class order); {} when unweighted."""
    return {} if weights is None else {"class_weights": ",".join(f"{w:.5g}" for w in weights)}


def feedback_rows(selection: Selection, plan: Any) -> pd.DataFrame | None:
    """Ledger rows of the samples dynamic feedback removal dropped (synthetic ones have no row)."""
    if plan is None or not plan.removed:
        return None
    original = [r for r in plan.removed if r.position < len(selection.kept_ids)]
    return removed_frame(training_ids(selection)[[r.position for r in original]], "persistent_high_loss",
                         [r.score for r in original])


def dataset_input(dataset: Dataset, labels: np.ndarray) -> DatasetInput:
    """MLflow's view of the training data: the dataset's name and digest, its class counts as the frame."""
    counts = np.bincount(labels, minlength=dataset.n_classes).astype(float)
    frame = pd.DataFrame({"class": list(dataset.class_names), "n_train": counts})
    return DatasetInput(dataset.source, dataset.digest(), dataset.source, frame)


@dg.asset(group_name="training", kinds={"pytorch", "mlflow"}, code_version=cache.CODE_VERSION)
def trained_model(context: dg.AssetExecutionContext, config: TrainedModelConfig, raw_dataset: Dataset,
                  pruned_dataset: Selection, mlflow: MlflowResource,
                  io_manager: dg.ResourceParam[RunScopedIOManager]) -> dg.Output[TrainedModel]:
    """Trains the kind's model on the pruned data: the document's CNN for images (3x3 conv 64 + ReLU +
    2x2 max pool + FC 128 + ReLU + FC classes), the MLP for tables, the text CNN (Kim 2014: the
    document's CNN in one dimension) for texts; and opens its MLflow run: parameters of every step,
    training metrics, the model. The same settings on the same pruned data reuse the trained model and
    its MLflow run (defs/cache.py).
    The fractions it logs (`retained_fraction` = `kept_fraction_of_train`, ...) are defined in
    core/selection/fractions.py."""
    key = cache.asset_key(context, "trained_model", config.model_dump(), ["raw_dataset", "pruned_dataset"])
    hit = cache.lookup(context, io_manager, "trained_model", key)
    if hit is not None:
        return cache.output(hit[0], hit[1], key)
    out = train_and_log(context, config, raw_dataset, pruned_dataset, mlflow)
    cache.remember(context, io_manager, "trained_model", key)
    return cache.output(out.value, dict(out.metadata), key)


def train_and_log(context: dg.AssetExecutionContext, config: TrainedModelConfig, raw_dataset: Dataset,
                  pruned_dataset: Selection, mlflow: MlflowResource) -> dg.Output[TrainedModel]:
    """trained_model's work: train the kind's model, log its MLflow run."""
    mlflow.check_reachable()  # before minutes of training, not after
    started = time.time()  # the MLflow run spans the training it records
    content, labels = training_content(raw_dataset, pruned_dataset)
    cfg = TrainParams.of(config).for_kind(raw_dataset.kind)  # epochs and lr at 0: the kind's defaults
    cfg = cfg.model_copy(update={"threads": config.threads or default_threads()})
    dynamic = DynamicParams.of(config).for_kind(raw_dataset.kind)  # auto: the kind's default
    plan = make_epoch_plan(dynamic.dynamic, len(labels), prune_ratio=dynamic.prune_ratio, delta=dynamic.delta,
                           feedback=dynamic.feedback, seed=config.seed)
    weights = class_weights_of(pruned_dataset, labels, raw_dataset.n_classes, raw_dataset.kind)
    result, encoder, example = train_final(raw_dataset.kind, content, labels, raw_dataset.n_classes, cfg,
                                           pruned_dataset.feature_mask, pruned_dataset.kept_features, plan,
                                           AugmentParams.of(config), weights)
    feedback = feedback_rows(pruned_dataset, plan)
    n_dropped = 0 if feedback is None else len(feedback)
    fractions = selection_fractions(pruned_dataset, n_dropped=n_dropped, sample_passes=result.sample_passes,
                                    epochs=cfg.epochs, n_train=len(labels))
    strategy = strategy_name(pruned_dataset, dynamic)
    metrics = {
        "n_train": float(len(labels)),
        "train_seconds": round(result.seconds, 3),
        "sample_passes": float(result.sample_passes),
        **fractions.as_dict(),
        "n_feedback_removed": float(n_dropped),
        "final_train_loss": result.epoch_losses[-1] if result.epoch_losses else float("nan"),
    }
    tags = {"dagster_run_id": context.run_id, "dagster_asset": "trained_model", "kind": raw_dataset.kind,
            "dataset": raw_dataset.source, "dataset_digest": raw_dataset.digest()}
    params = {"strategy": strategy, "kind": raw_dataset.kind,
              **config.model_dump(exclude={"log_model"}), "epochs": cfg.epochs, "lr": cfg.lr,
              "dynamic": dynamic.dynamic,
              **step_params(pruned_dataset), **weight_params(weights)}
    run_id = mlflow.log_training_run(
        f"{strategy}-{fractions.target_fraction:.2f}", tags, params, metrics, losses=result.epoch_losses,
        model=result.model if config.log_model else None, input_example=example,
        model_name=model_name(strategy, fractions.target_fraction), dataset=dataset_input(raw_dataset, labels),
        started=started)
    model = TrainedModel(state_dict={k: v.clone() for k, v in result.model.state_dict().items()},
                         shape=raw_dataset.image_shape if raw_dataset.kind == "image" else (),
                         n_classes=raw_dataset.n_classes, mlflow_run_id=run_id, metrics=metrics,
                         feedback_removed=feedback, kind=raw_dataset.kind, encoder=encoder)
    return dg.Output(model, metadata=to_metadata({**metrics, "mlflow_run_id": run_id, **weight_params(weights),
                                                  "mlflow_tracking_uri": mlflow.uri(),
                                                  "mlflow_run": dg.MetadataValue.url(mlflow.run_url(run_id)),
                                                  **dataset_metadata(raw_dataset, context.job_name)}))


@dg.asset(group_name="training", kinds={"mlflow"})
def model_evaluation(context: dg.AssetExecutionContext, raw_dataset: Dataset, pruned_dataset: Selection,
                     trained_model: TrainedModel, mlflow: MlflowResource,
                     output_store: OutputStore) -> dg.Output[dict]:
    """Test accuracy on the held-out split (never pruned), logged to the model's MLflow run with the
    kept-id manifest and ledger; writes summary.json next to kept_ids.csv and ledger.csv; then refreshes
    the dataset's comparison run in MLflow (defs/comparison.py), linked as `mlflow_dataset_comparison`."""
    import mlflow as mlf

    n_feedback = 0 if trained_model.feedback_removed is None else len(trained_model.feedback_removed)
    if n_feedback:
        pruned_dataset = pruned_dataset.advance(
            "dynamic_feedback", StepResult(removed=trained_model.feedback_removed),
            {"source": "trained_model feedback removal"}, 0.0)
    test_pos = raw_dataset.index_of(pruned_dataset.test_ids)
    y_test = raw_dataset.labels[test_pos]
    pred = trained_model.predict(content_of(raw_dataset, test_pos)).argmax(1)
    acc = float((pred == y_test).mean()) if len(y_test) else float("nan")
    per_class = {raw_dataset.class_names[c]: round(float((pred[y_test == c] == c).mean()), 4)
                 for c in np.unique(y_test)}
    summary = selection_summary(
        raw_dataset, pruned_dataset, context.run_id,
        test_accuracy=round(acc, 6), per_class_accuracy=per_class,
        n_train=int(trained_model.metrics["n_train"]), train_seconds=trained_model.metrics["train_seconds"],
        sample_pass_fraction=trained_model.metrics.get("sample_pass_fraction", 1.0),
        mlflow_run_id=trained_model.mlflow_run_id, mlflow_tracking_uri=mlflow.uri(),
        compute=compute_summary(context.instance, context.run_id),
    )
    folder = output_store.run_folder(context.run_id)
    # kept_ids.csv and ledger.csv are the score step's: written here only when it ran in another run
    # (train_job) or training dropped samples (dynamic feedback), so every run folder is complete
    written = [folder / name for name in ("kept_ids.csv", "ledger.csv")]
    fresh = n_feedback or not all(p.exists() for p in written)
    paths = write_ledger(folder, pruned_dataset, raw_dataset.kind) if fresh else {p.name: p for p in written}
    paths["summary.json"] = write_summary(folder, summary)
    with mlflow.start_run(run_id=trained_model.mlflow_run_id):
        compute = summary["compute"]
        mlf.log_metrics({"test_accuracy": acc, "compute_seconds": compute["compute_seconds"],
                         "compute_sample_passes": float(compute["compute_sample_passes"]),
                         "representation_seconds": compute["assets"].get("representation", {}).get("seconds", 0.0)})
        mlf.set_tag("dagster_evaluation_run_id", context.run_id)
        for path in paths.values():
            mlf.log_artifact(str(path), artifact_path="pruning")
        mlf.log_dict(per_class, "per_class_accuracy.json")
    output_store.mark_latest(context.run_id)
    compare_id = update_dataset_comparison(mlflow, raw_dataset.source, raw_dataset.digest())
    return dg.Output(summary, metadata=to_metadata({
        "test_accuracy": round(acc, 4), "n_test": len(y_test), "per_class_accuracy": per_class,
        "output_folder": str(folder), "mlflow_run_id": trained_model.mlflow_run_id,
        "mlflow_run": dg.MetadataValue.url(mlflow.run_url(trained_model.mlflow_run_id)),
        "mlflow_dataset_comparison": dg.MetadataValue.url(mlflow.run_url(compare_id)),
        "mlflow_runs_table": dg.MetadataValue.url(mlflow.runs_table_url()),
        **dataset_metadata(raw_dataset, context.job_name),
        "summary": json.loads(json.dumps(summary["steps"])),
    }))
