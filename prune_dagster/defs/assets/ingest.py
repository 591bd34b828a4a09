"""Stage `ingest`: load the source once, split off the test set, validate the training samples."""


import time
from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

import prune_dagster.fixtures.defects  # noqa: F401  (registers the "dirty-digits" named sources)
from prune_dagster import settings
from prune_dagster.core.data.dataset import TEST, TRAIN, Dataset
from prune_dagster.core.data.gallery import gallery_markdown
from prune_dagster.core.data.overrides import load_overrides
from prune_dagster.core.data.sources import DEFAULT_MAX_IMAGE_PIXELS, load_source
from prune_dagster.core.ledger import Selection, removed_frame
from prune_dagster.core.steps.validate import ValidateParams, sample_problems, validate
from prune_dagster.defs.assets.common import dataset_metadata, engine_metadata, run_step, to_metadata
from prune_dagster.defs.config import dagster_config, to_params
from prune_dagster.defs.engine import ComputeEngine


class RawDatasetConfig(dg.Config):
    source: str = Field(default="", description="'digits', 'dirty-digits', an .npz path or an image folder; "
                                                "empty = $PRUNE_DATASET or 'digits'")
    test_fraction: float = 0.2
    split_seed: int = 0
    image_size: list[int] | None = Field(default=None, description="image folders: [width, height]; "
                                                                   "empty = the most common size")
    on_size_mismatch: str = Field(default="resize", description="image folders: 'resize' other sizes, or "
                                                                "'reject' them (removed in validated)")
    alpha: str = Field(default="white", description="image folders: composite transparency on 'white' or "
                                                    "'black', or 'drop' alpha")
    max_image_pixels: int = Field(default=DEFAULT_MAX_IMAGE_PIXELS,
                                  description="image folders: larger images are refused as decompression bombs")


@dg.asset(group_name="ingest", kinds={"numpy"})
def raw_dataset(context: dg.AssetExecutionContext, config: RawDatasetConfig,
                engine: ComputeEngine) -> dg.Output[Dataset]:
    """The source dataset, read once (never modified), with a stratified, seeded held-out test split.

    The test split is made here, before any pruning, and no later step touches it.
    """
    spec = config.source or settings.dataset()
    start = time.perf_counter()
    tasks_before = engine.tasks_run
    dataset = load_source(  # reads in this process (no blockwise work for the engine)
        spec, size=config.image_size, on_size_mismatch=config.on_size_mismatch, alpha=config.alpha,
        max_image_pixels=config.max_image_pixels,
        progress=lambda phase, done, total: context.log.info(f"{phase} {done} / {total} images"),
    )
    if len(dataset.split) != len(dataset):  # a source may come with its own split (dirty-digits)
        dataset = dataset.with_split(config.test_fraction, config.split_seed)
    digest = dataset.digest()
    preview = np.arange(min(16, len(dataset)))
    metadata = to_metadata({
        **dataset_metadata(dataset, context.job_name),  # dataset, dataset_digest, job_name: as every step
        "source_spec": spec,  # what the source sensor watches next
        "n_samples": len(dataset),
        "n_train": int((dataset.split == TRAIN).sum()),
        "n_test": int((dataset.split == TEST).sum()),
        "image_shape": list(dataset.image_shape),
        "classes": list(dataset.class_names),
        "n_load_errors": len(dataset.load_errors),
        "load_info": dataset.load_info,
        "empty_classes": dataset.load_info.get("empty_classes", []),
        "seconds": round(time.perf_counter() - start, 3),
        **engine_metadata(engine, tasks_before),
    })
    metadata["preview"] = dg.MetadataValue.md(gallery_markdown(
        dataset.images[preview], [f"`{dataset.ids[i]}` {dataset.class_names[dataset.labels[i]]}" for i in preview]))
    return dg.Output(dataset, metadata=metadata, data_version=dg.DataVersion(digest))


ValidateConfig = dagster_config(ValidateParams)


@dg.asset(group_name="ingest")
def validated(config: ValidateConfig, raw_dataset: Dataset, engine: ComputeEngine) -> dg.Output[Selection]:
    """Training samples that can be used: unreadable files, NaN/inf pixels and blank images are
    removed with a reason; a dataset with no usable samples or a single class stops the run here.
    Overrides: pinned drops are removed here (reason `override`); pinned keeps are protected from
    every later step (an unusable pinned sample is still removed: nothing can train on it)."""
    params = to_params(config, ValidateParams)
    test_ids = raw_dataset.ids_in(TEST)
    tasks_before = engine.tasks_run
    bad_test = engine.supply(sample_problems)(raw_dataset, test_ids, params.drop_blank)
    train_ids = raw_dataset.ids_in(TRAIN)
    keep, drop = set(), set()
    overrides = params.overrides or settings.overrides()
    if overrides:
        keep, drop = load_overrides(overrides, train_ids, test_ids)
    start = Selection(
        kept_ids=train_ids,
        test_ids=np.asarray([i for i in test_ids if i not in bad_test], dtype=object),
        n_train_split=len(train_ids),
    )

    def compute(ids, images, labels):
        result = engine.supply(validate)(raw_dataset, ids, params.drop_blank)
        pinned_drop = sorted(drop - set(result.removed["id"]))
        result.removed = pd.concat([result.removed, removed_frame(pinned_drop, "override", 1.0)], ignore_index=True)
        return result

    out = run_step("validated", raw_dataset, start, params, compute,
                   extra_metadata={"n_test_unusable": len(bad_test), "n_pinned_keep": len(keep),
                                   "n_pinned_drop": len(drop)}, engine=engine)
    selection = replace(out.value, pinned_keep=frozenset(keep & set(out.value.kept_ids)))
    metadata = {**out.metadata, **to_metadata(engine_metadata(engine, tasks_before))}  # the test-set check too
    return dg.Output(selection, metadata=metadata)
