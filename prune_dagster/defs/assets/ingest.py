"""Stage `ingest`: load the source once and split off the test set (the first pruning step, `validated`,
is made from the pipeline like every step: defs/assets/steps.py)."""


import time
from typing import Any, Literal

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

import prune_dagster.fixtures.defects  # noqa: F401  (registers the "dirty-digits" named sources)
from prune_dagster import settings
from prune_dagster.core.data.dataset import TEST, TRAIN, Dataset
from prune_dagster.core.data.fingerprint import fingerprint
from prune_dagster.core.data.gallery import gallery_markdown, rows_markdown
from prune_dagster.core.data.sources import DEFAULT_MAX_IMAGE_PIXELS, load_source
from prune_dagster.defs import cache
from prune_dagster.defs.assets.common import dataset_metadata, engine_metadata, to_metadata
from prune_dagster.defs.engine import ComputeEngine
from prune_dagster.defs.io import RunScopedIOManager


class RawDatasetConfig(dg.Config):
    source: str = Field(default="", description="'digits', 'dirty-digits', an .npz path, an image or .txt folder, "
                                                "or a .csv / .parquet / .jsonl file; empty = $PRUNE_DATASET or "
                                                "'digits'")
    kind: Literal["auto", "image", "table", "text"] = Field(
        default="auto", description="what the source holds; auto: a file with a text column (text_column) is "
        "text, another file a table, a folder of .txt files text, anything else images")
    label_column: str = Field(default="label", description="tables and text files: the column of class labels")
    id_column: str = Field(default="", description="tables and text files: the column of unique ids; empty: "
                                                   "'id' when present, else the row number")
    split_column: str = Field(default="", description="tables and text files: an optional column of 'train' / "
                                                      "'test' (then test_fraction is not used)")
    text_column: str = Field(default="text", description="text files: the column of texts")
    na_values: list[str] = Field(default=["?"], description="tables: values read as missing, beside pandas' own "
                                                            "('', 'NA', 'NaN', 'null', ...)")
    max_text_bytes: int = Field(default=10_000_000, ge=1, description="tables and texts: a longer field or text "
                                "file is refused (named in one line), never read whole")
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0, description="share of each class held out as the "
                                 "test split (stratified, made before any pruning, never pruned)")
    split_seed: int = Field(default=0, ge=0, description="seed of the stratified test split")
    image_size: list[int] | None = Field(default=None, description="image folders: [width, height]; "
                                                                   "empty = the most common size")
    on_size_mismatch: str = Field(default="resize", description="image folders: 'resize' other sizes, or "
                                                                "'reject' them (removed in validated)")
    alpha: str = Field(default="white", description="image folders: composite transparency on 'white' or "
                                                    "'black', or 'drop' alpha")
    max_image_pixels: int = Field(default=DEFAULT_MAX_IMAGE_PIXELS,
                                  description="image folders: larger images are refused as decompression bombs")


@dg.asset(group_name="ingest", kinds={"numpy"}, code_version=cache.CODE_VERSION)
def raw_dataset(context: dg.AssetExecutionContext, config: RawDatasetConfig, engine: ComputeEngine,
                io_manager: dg.ResourceParam[RunScopedIOManager]) -> dg.Output[Dataset]:
    """The source dataset, read once (never modified), with a stratified, seeded held-out test split.

    The test split is made here, before any pruning, and no later step touches it. Unchanged files
    (their sizes and modification times) and settings reuse the dataset read before (defs/cache.py).
    """
    spec = config.source or settings.dataset()
    key = cache.digest(cache.CODE_VERSION, "raw_dataset", config.model_dump(), spec, fingerprint(spec))
    hit = cache.lookup(context, io_manager, "raw_dataset", key)
    if hit is not None:
        return cache.output(hit[0], hit[1], key)
    cache.remember(context, io_manager, "raw_dataset", key)
    return cache.output(*read_source(context, config, spec, engine), key)


def read_source(context: dg.AssetExecutionContext, config: RawDatasetConfig, spec: str,
                engine: ComputeEngine) -> tuple[Dataset, dict[str, Any]]:
    """The source read and split, with the asset's metadata."""
    start = time.perf_counter()
    tasks_before = engine.tasks_run
    dataset = load_source(  # reads in this process (no blockwise work for the engine)
        spec, config.kind, size=config.image_size, on_size_mismatch=config.on_size_mismatch, alpha=config.alpha,
        max_image_pixels=config.max_image_pixels, label_column=config.label_column, id_column=config.id_column,
        split_column=config.split_column, text_column=config.text_column, na_values=tuple(config.na_values),
        max_text_bytes=config.max_text_bytes,
        progress=lambda phase, done, total: context.log.info(f"{phase} {done} / {total} images"),
    )
    if len(dataset.split) != len(dataset):  # a source may come with its own split (dirty-digits)
        dataset = dataset.with_split(config.test_fraction, config.split_seed)
    preview = np.arange(min(16, len(dataset)))
    metadata = to_metadata({
        **dataset_metadata(dataset, context.job_name),  # dataset, dataset_digest, job_name: as every step
        "source_spec": spec,  # what the source sensor watches next
        "n_samples": len(dataset),
        "n_train": int((dataset.split == TRAIN).sum()),
        "n_test": int((dataset.split == TEST).sum()),
        **content_metadata(dataset),
        "classes": list(dataset.class_names),
        "n_load_errors": len(dataset.load_errors),
        "load_info": dataset.load_info,
        "empty_classes": dataset.load_info.get("empty_classes", []),
        "seconds": round(time.perf_counter() - start, 3),
        **engine_metadata(engine, tasks_before),
    })
    captions = [f"`{dataset.ids[i]}` {dataset.class_names[dataset.labels[i]]}" for i in preview]
    metadata["preview"] = dg.MetadataValue.md(
        gallery_markdown(dataset.images[preview], captions) if dataset.kind == "image"
        else rows_markdown(dataset, preview, "first samples"))
    return dataset, metadata


def content_metadata(dataset: Dataset) -> dict[str, Any]:
    """What the content is: the image shape, the table's columns, or the texts' lengths."""
    if dataset.kind == "image":
        return {"image_shape": list(dataset.image_shape)}
    if dataset.kind == "table":
        return {"columns": list(map(str, dataset.table.columns)),
                "numeric_columns": dataset.load_info.get("numeric_columns", []),
                "categorical_columns": dataset.load_info.get("categorical_columns", [])}
    lengths = pd.Series(dataset.texts).astype(str).str.len()
    return {"text_chars_median": int(lengths.median()) if len(lengths) else 0,
            "text_chars_max": int(lengths.max()) if len(lengths) else 0}
