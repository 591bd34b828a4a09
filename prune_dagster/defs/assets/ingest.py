"""Stage `ingest`: load the source once, split off the test set, validate the training samples."""


import os
import time

import dagster as dg
import numpy as np
from pydantic import Field

from prune_dagster.core.dataset import TEST, TRAIN, Dataset
from prune_dagster.core.gallery import gallery_markdown
from prune_dagster.core.ledger import Selection
from prune_dagster.core.sources import load_source
from prune_dagster.core.steps.validate import sample_problems, validate
from prune_dagster.defs.assets.common import run_step, to_metadata


class RawDatasetConfig(dg.Config):
    source: str = Field(default="", description="'digits', 'dirty-digits', an .npz path or an image folder; "
                                                "empty = $PRUNE_DATASET or 'digits'")
    test_fraction: float = 0.2
    split_seed: int = 0


@dg.asset(group_name="ingest", kinds={"numpy"})
def raw_dataset(context: dg.AssetExecutionContext, config: RawDatasetConfig) -> dg.Output[Dataset]:
    """The source dataset, read once (never modified), with a stratified, seeded held-out test split.

    The test split is made here, before any pruning, and no later step touches it.
    """
    spec = config.source or os.environ.get("PRUNE_DATASET", "digits")
    start = time.perf_counter()
    dataset = load_source(spec)
    if len(dataset.split) != len(dataset):  # a source may come with its own split (dirty-digits)
        dataset = dataset.with_split(config.test_fraction, config.split_seed)
    digest = dataset.digest()
    preview = np.arange(min(16, len(dataset)))
    metadata = to_metadata({
        "source": dataset.source,
        "n_samples": len(dataset),
        "n_train": int((dataset.split == TRAIN).sum()),
        "n_test": int((dataset.split == TEST).sum()),
        "image_shape": list(dataset.image_shape),
        "classes": list(dataset.class_names),
        "n_load_errors": len(dataset.load_errors),
        "digest": digest,
        "seconds": round(time.perf_counter() - start, 3),
    })
    metadata["preview"] = dg.MetadataValue.md(gallery_markdown(
        dataset.images[preview], [f"`{dataset.ids[i]}` {dataset.class_names[dataset.labels[i]]}" for i in preview]))
    return dg.Output(dataset, metadata=metadata, data_version=dg.DataVersion(digest))


class ValidateConfig(dg.Config):
    drop_blank: bool = True


@dg.asset(group_name="ingest")
def validated(config: ValidateConfig, raw_dataset: Dataset) -> dg.Output[Selection]:
    """Training samples that can be used: unreadable files, NaN/inf pixels and blank images are
    removed with a reason; a dataset with no usable samples or a single class stops the run here."""
    test_ids = raw_dataset.ids_in(TEST)
    bad_test = sample_problems(raw_dataset, test_ids, config.drop_blank)
    start = Selection(
        kept_ids=raw_dataset.ids_in(TRAIN),
        test_ids=np.asarray([i for i in test_ids if i not in bad_test], dtype=object),
        n_train_split=int((raw_dataset.split == TRAIN).sum()),
    )
    return run_step("validated", raw_dataset, start, config,
                    lambda ids, images, labels: validate(raw_dataset, ids, config.drop_blank),
                    extra_metadata={"n_test_unusable": len(bad_test)})
