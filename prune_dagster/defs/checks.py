"""Asset checks that guard the invariants; blocking ones stop the run before training."""


import dagster as dg
import numpy as np

from prune_dagster.core import pipeline
from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.ledger import Selection
from prune_dagster.core.steps.dedup import content_hashes
from prune_dagster.defs.assets.common import dataset_metadata

RAW = {"raw_dataset": dg.AssetIn("raw_dataset")}

# The most a cleaning step may remove before the run stops (declared per step in core/pipeline.py):
# beyond this a setting or the data is almost surely wrong, and training on the rest would hide it.
REMOVAL_FLOORS = {s.asset: s.removal_floor for s in pipeline.PIPELINE if s.removal_floor is not None}


def removal_floor_check(step: str, floor: float) -> dg.AssetChecksDefinition:
    """Reads n_in / n_out from the step's latest materialization metadata."""

    @dg.asset_check(asset=step, name="removal_within_floor", blocking=True,
                    description=f"{step} removes at most {floor:.0%} of its input")
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        event = context.instance.get_latest_materialization_event(dg.AssetKey(step))
        meta = event.asset_materialization.metadata  # type: ignore[union-attr]
        n_in, n_out = meta["n_in"].value, meta["n_out"].value
        share = (n_in - n_out) / max(n_in, 1)
        named = {k: meta[k].value for k in ("dataset", "dataset_digest", "job_name") if k in meta}
        return dg.AssetCheckResult(
            passed=bool(share <= floor),
            metadata={"removed_share": round(share, 4), "floor": floor, **named},
            description=None if share <= floor else
            f"{step} would remove {share:.1%} of its input (floor {floor:.0%}): check its settings or the data",
        )

    return _check


@dg.asset_check(asset="validated", blocking=True, additional_ins=RAW,
                description="every kept training sample has finite pixels")
def no_non_finite(raw_dataset: Dataset, validated: Selection) -> dg.AssetCheckResult:
    images = raw_dataset.images[raw_dataset.index_of(validated.kept_ids)]
    bad = int((~np.isfinite(images.reshape(len(images), -1)).all(axis=1)).sum())
    return dg.AssetCheckResult(passed=bad == 0, metadata={"non_finite_samples": bad, **dataset_metadata(raw_dataset)})


@dg.asset_check(asset="exact_deduplicated", blocking=True, additional_ins=RAW,
                description="no byte-identical training images left")
def no_exact_duplicates_left(raw_dataset: Dataset, exact_deduplicated: Selection) -> dg.AssetCheckResult:
    record = exact_deduplicated.record("exact_deduplicated")
    if record is not None and not record.config.get("enabled", True):
        return dg.AssetCheckResult(passed=True, description="exact deduplication is disabled in this run")
    hashes = content_hashes(raw_dataset.images[raw_dataset.index_of(exact_deduplicated.kept_ids)])
    dups = int(len(hashes) - len(np.unique(hashes, axis=0)))
    return dg.AssetCheckResult(passed=dups == 0, metadata={"duplicates_left": dups, **dataset_metadata(raw_dataset)})


@dg.asset_check(asset="pruned_dataset", blocking=True, additional_ins=RAW,
                description="no test-set sample in the training data")
def no_test_sample_in_training(raw_dataset: Dataset, pruned_dataset: Selection) -> dg.AssetCheckResult:
    leaked = np.intersect1d(pruned_dataset.kept_ids.astype(str), pruned_dataset.test_ids.astype(str))
    return dg.AssetCheckResult(passed=len(leaked) == 0,
                               metadata={"leaked": len(leaked), **dataset_metadata(raw_dataset)})


@dg.asset_check(asset="pruned_dataset", blocking=False, additional_ins=RAW,
                description="every class keeps at least one sample")
def every_class_kept(raw_dataset: Dataset, pruned_dataset: Selection) -> dg.AssetCheckResult:
    counts = np.bincount(raw_dataset.labels[raw_dataset.index_of(pruned_dataset.kept_ids)],
                         minlength=raw_dataset.n_classes)
    train_counts = np.bincount(raw_dataset.labels[raw_dataset.split == "train"],
                               minlength=raw_dataset.n_classes)
    lost = [raw_dataset.class_names[c] for c in np.flatnonzero((train_counts > 0) & (counts == 0))]
    ratio = float(counts[counts > 0].max() / counts[counts > 0].min()) if (counts > 0).any() else float("nan")
    return dg.AssetCheckResult(passed=not lost, metadata={"classes_lost": lost, "class_ratio": round(ratio, 3),
                                                          **dataset_metadata(raw_dataset)})


CHECKS = [removal_floor_check(s, f) for s, f in REMOVAL_FLOORS.items()] + [
    no_non_finite, no_exact_duplicates_left, no_test_sample_in_training, every_class_kept]
