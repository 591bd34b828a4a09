"""Stage `training`: the document's CNN on the pruned data, evaluated on the untouched test split."""


import json
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.data.export import write_selection
from prune_dagster.core.ledger import Selection, StepResult, removed_frame
from prune_dagster.core.selection.dynamic import make_epoch_plan
from prune_dagster.core.training.model import PruneCNN
from prune_dagster.core.training.train import TrainConfig, accuracy, default_threads, predict_proba, train_cnn
from prune_dagster.defs.assets.common import to_metadata
from prune_dagster.defs.resources import MlflowResource, OutputStore
from prune_dagster.defs.summary import score_step_fraction, selection_summary


@dataclass
class TrainedModel:
    state_dict: dict[str, Any]
    shape: tuple[int, int, int]
    n_classes: int
    mlflow_run_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    feedback_removed: pd.DataFrame | None = None  # ledger rows of dynamic feedback removal (id, reason, score)

    def build(self) -> PruneCNN:
        h, w, c = self.shape
        model = PruneCNN(c, h, w, self.n_classes)
        model.load_state_dict(self.state_dict)
        return model.eval()


class TrainConfigDg(dg.Config):
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    log_model: bool = True  # log the model to MLflow (pt2 format, with signature and input example)
    dynamic: str = "none"  # none | infobatch: prune during training from per-sample losses
    prune_ratio: float = 0.5  # infobatch: share of below-mean-loss samples skipped each epoch
    delta: float = 0.875  # infobatch: the full set is used from delta * epochs on
    feedback: bool = False  # drop samples whose loss stays in the top tail (ledger step dynamic_feedback)


def training_ids(selection: Selection) -> np.ndarray:
    """Ids in the order of `training_arrays`: kept originals (dataset order), then synthetic ones."""
    return selection.kept_ids if selection.synthetic is None else np.concatenate(
        [selection.kept_ids, selection.synthetic.ids])


def training_arrays(dataset: Dataset, selection: Selection,
                    positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Kept original samples (or the dataset rows at `positions`) plus any synthetic ones."""
    pos = dataset.index_of(selection.kept_ids) if positions is None else positions
    images, labels = dataset.images[pos], dataset.labels[pos]
    if selection.synthetic is not None and len(selection.synthetic.ids):
        images = np.concatenate([images, selection.synthetic.images])
        labels = np.concatenate([labels, selection.synthetic.labels])
    return images, labels


def strategy_name(selection: Selection, config: "TrainConfigDg") -> str:
    """e.g. `el2n`, `el2n+infobatch`, `infobatch+feedback` (static step off), or `none`."""
    record = next((r for r in selection.history if r["step"] == "pruned_dataset"), None)
    parts = [record["config"]["strategy"]] if record and record["config"].get("enabled", True) else []
    if config.dynamic != "none":
        parts += [config.dynamic] + (["feedback"] if config.feedback else [])
    return "+".join(parts) or "none"


def step_params(selection: Selection) -> dict[str, str]:
    params = {}
    for record in selection.history:
        for key, value in record["config"].items():
            params[f"{record['step']}.{key}"] = str(value)
    return params


@dg.asset(group_name="training", kinds={"pytorch", "mlflow"})
def trained_model(context: dg.AssetExecutionContext, config: TrainConfigDg, raw_dataset: Dataset,
                  pruned_dataset: Selection, mlflow: MlflowResource) -> dg.Output[TrainedModel]:
    """Trains the document's CNN (3x3 conv 64 + ReLU + 2x2 max pool + FC 128 + ReLU + FC classes) on
    the pruned data and opens its MLflow run: parameters of every step, training metrics, the model."""
    import mlflow as mlf

    mlflow.check_reachable()  # before minutes of training, not after
    images, labels = training_arrays(raw_dataset, pruned_dataset)
    cfg = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                      weight_decay=config.weight_decay, seed=config.seed, threads=default_threads())
    plan = make_epoch_plan(config.dynamic, len(labels), prune_ratio=config.prune_ratio, delta=config.delta,
                           feedback=config.feedback, seed=config.seed)
    result = train_cnn(images, labels, raw_dataset.n_classes, cfg, pruned_dataset.feature_mask, epoch_plan=plan)
    feedback = None
    if plan is not None and plan.removed:
        n_orig = len(pruned_dataset.kept_ids)
        original = [r for r in plan.removed if r.position < n_orig]  # synthetic samples have no ledger row
        feedback = removed_frame(training_ids(pruned_dataset)[[r.position for r in original]],
                                 "persistent_high_loss", [r.score for r in original])
    passes_share = result.sample_passes / max(config.epochs * len(labels), 1)
    strategy = strategy_name(pruned_dataset, config)
    metrics = {
        "n_train": float(len(labels)),
        "train_seconds": round(result.seconds, 3),
        "sample_passes": float(result.sample_passes),
        # share of full training on the cleaned set actually done: static fraction x dynamic passes
        "retained_fraction": score_step_fraction(pruned_dataset) * passes_share,
        "dynamic_passes_fraction": passes_share,
        "n_feedback_removed": float(0 if feedback is None else len(feedback)),
        "overall_retained_fraction": pruned_dataset.retained_fraction,
        "final_train_loss": result.epoch_losses[-1] if result.epoch_losses else float("nan"),
    }
    tags = {"dagster_run_id": context.run_id, "dagster_asset": "trained_model",
            "dataset": raw_dataset.source, "dataset_digest": raw_dataset.digest()}
    with mlflow.start_run(run_name=f"{strategy}-{metrics['retained_fraction']:.2f}", tags=tags) as run:
        mlf.log_params({"strategy": strategy, "seed": config.seed, "epochs": config.epochs,
                        "batch_size": config.batch_size, "lr": config.lr, "dynamic": config.dynamic,
                        "prune_ratio": config.prune_ratio, "delta": config.delta, "feedback": config.feedback,
                        **step_params(pruned_dataset)})
        mlf.log_metrics(metrics)
        for epoch, loss in enumerate(result.epoch_losses):
            mlf.log_metric("train_loss", loss, step=epoch)
        if config.log_model:
            from mlflow import pytorch as mlflow_pytorch

            example = np.transpose(images[:1], (0, 3, 1, 2)).astype(np.float32)
            mlflow_pytorch.log_model(result.model, name="model", input_example=example)
        run_id = run.info.run_id
    model = TrainedModel(state_dict={k: v.clone() for k, v in result.model.state_dict().items()},
                         shape=raw_dataset.image_shape, n_classes=raw_dataset.n_classes,
                         mlflow_run_id=run_id, metrics=metrics, feedback_removed=feedback)
    return dg.Output(model, metadata=to_metadata({**metrics, "mlflow_run_id": run_id,
                                                  "mlflow_tracking_uri": mlflow.uri()}))


@dg.asset(group_name="training", kinds={"mlflow"})
def model_evaluation(context: dg.AssetExecutionContext, raw_dataset: Dataset, pruned_dataset: Selection,
                     trained_model: TrainedModel, mlflow: MlflowResource,
                     output_store: OutputStore) -> dg.Output[dict]:
    """Test accuracy on the held-out split (never pruned), logged to the model's MLflow run with the
    kept-id manifest and ledger; writes summary.json next to kept_ids.csv and ledger.csv."""
    import mlflow as mlf

    model = trained_model.build()
    if trained_model.feedback_removed is not None and len(trained_model.feedback_removed):
        pruned_dataset = pruned_dataset.advance(
            "dynamic_feedback", StepResult(removed=trained_model.feedback_removed),
            {"source": "trained_model feedback removal"}, 0.0)
    test_pos = raw_dataset.index_of(pruned_dataset.test_ids)
    x_test, y_test = raw_dataset.images[test_pos], raw_dataset.labels[test_pos]
    acc = accuracy(model, x_test, y_test)
    pred = predict_proba(model, x_test).argmax(1)
    per_class = {raw_dataset.class_names[c]: round(float((pred[y_test == c] == c).mean()), 4)
                 for c in np.unique(y_test)}
    summary = selection_summary(
        raw_dataset, pruned_dataset, context.run_id,
        test_accuracy=round(acc, 6), per_class_accuracy=per_class,
        n_train=int(trained_model.metrics["n_train"]), train_seconds=trained_model.metrics["train_seconds"],
        mlflow_run_id=trained_model.mlflow_run_id, mlflow_tracking_uri=mlflow.uri(),
    )
    folder = output_store.run_folder(context.run_id)
    paths = write_selection(folder, pruned_dataset, summary)
    with mlflow.start_run(run_id=trained_model.mlflow_run_id):
        mlf.log_metric("test_accuracy", acc)
        mlf.set_tag("dagster_evaluation_run_id", context.run_id)
        for path in paths.values():
            mlf.log_artifact(str(path), artifact_path="pruning")
        mlf.log_dict(per_class, "per_class_accuracy.json")
    output_store.mark_latest(context.run_id)
    return dg.Output(summary, metadata=to_metadata({
        "test_accuracy": round(acc, 4), "n_test": len(y_test), "per_class_accuracy": per_class,
        "output_folder": str(folder), "mlflow_run_id": trained_model.mlflow_run_id,
        "summary": json.loads(json.dumps(summary["steps"])),
    }))
