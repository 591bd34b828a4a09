"""What every asset shares: metadata values, the removed-sample gallery and table, the dataset's name and
digest, the engine and job that ran it."""


from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from prune_dagster import settings
from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.data.export import jsonable
from prune_dagster.core.data.gallery import Tile, removed_markdown, removed_rows_markdown, sample_text
from prune_dagster.core.ledger import Selection
from prune_dagster.defs.engine import ComputeEngine


def to_metadata(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, dg.MetadataValue):  # a record, and records are tuples: keep as given
            out[key] = value
        elif isinstance(value, dict | list | tuple):
            out[key] = dg.MetadataValue.json(jsonable(value))
        elif isinstance(value, np.generic):
            out[key] = value.item()
        else:
            out[key] = value
    return out


GALLERY_KEYS = ("duplicate_of", "predicted_label")  # StepResult metadata the gallery reads, not shown as is
LEDGER_TABLE_ROWS = 1000  # the full-list table's cap; ledger.csv in the run's output folder has every row


def _caption(dataset: Dataset, row: Any, predicted: dict) -> list[str]:
    given = dataset.class_names[dataset.labels[dataset.index_of([row.id])[0]]]
    pred = predicted.get(row.id)
    label = f"{given} -> {dataset.class_names[int(pred)]}" if pred is not None else str(given)
    score = "" if pd.isna(row.score) else f"score {row.score:.3g}"
    return [str(row.id), label, score, str(row.reason)]


def removed_gallery(dataset: Dataset, selection: Selection, step: str, limit: int = 16,
                    extra: dict[str, Any] | None = None) -> dg.MetadataValue:
    """Up to `limit` of the step's removals, highest score first: tile, caption (id, given label ->
    predicted label where known, score, reason) and, for a near duplicate, the kept sample beside it
    (tables and texts: a markdown table of the same). `extra`: the step's `duplicate_of` (removed id ->
    kept id) and `predicted_label` (id -> class)."""
    extra = extra or {}
    rows = selection.ledger[selection.ledger["step"] == step]
    shown = rows.sort_values("score", ascending=False, na_position="last", kind="stable").head(limit)
    partners = extra.get("duplicate_of") or {}
    predicted = extra.get("predicted_label") or {}
    capped = f"first {LEDGER_TABLE_ROWS} rows; " if len(rows) > LEDGER_TABLE_ROWS else ""
    full = f"metadata `removed_ledger` ({capped}every row in the run's ledger.csv)"
    if dataset.kind != "image":
        return dg.MetadataValue.md(removed_rows_markdown(
            [_row_cells(dataset, row, predicted, partners) for row in shown.itertuples()], len(rows), full))
    tiles, texts = [], []
    for row in shown.itertuples():
        caption = _caption(dataset, row, predicted)
        partner_id = partners.get(row.id)
        partner = None
        if partner_id is not None and partner_id in dataset.id_index():
            partner = Tile(dataset.images[dataset.index_of([partner_id])[0]], ["kept", str(partner_id)])
        tiles.append(Tile(dataset.images[dataset.index_of([row.id])[0]], caption, partner))
        dup = [f"dup of {partner_id}"] if partner is not None else []  # the tile beside it is captioned "kept"
        texts.append(" · ".join(c for c in [*caption, *dup] if c))
    return dg.MetadataValue.md(removed_markdown(tiles, texts, len(rows), full))


def _row_cells(dataset: Dataset, row: Any, predicted: dict, partners: dict) -> dict[str, str]:
    """One removed table row or text for the markdown gallery, with the kept sample it duplicates."""
    _, label, score, reason = _caption(dataset, row, predicted)
    cells = {"id": str(row.id), "label": label, "score": score.removeprefix("score "), "reason": reason,
             "sample": sample_text(dataset, int(dataset.index_of([row.id])[0]))}
    partner = partners.get(row.id)
    if partner is not None and partner in dataset.id_index():
        cells["kept"] = f"`{partner}`: {sample_text(dataset, int(dataset.index_of([partner])[0]))}"
    return cells


def removed_ledger(selection: Selection, step: str) -> dg.MetadataValue:
    """The step's ledger rows (id, step, reason, score) as a table: the gallery's full list."""
    rows = selection.ledger[selection.ledger["step"] == step].head(LEDGER_TABLE_ROWS)
    schema = dg.TableSchema(columns=[dg.TableColumn("id", "string"), dg.TableColumn("step", "string"),
                                     dg.TableColumn("reason", "string"), dg.TableColumn("score", "float")])
    records = [dg.TableRecord({"id": str(r.id), "step": str(r.step), "reason": str(r.reason),
                               "score": None if pd.isna(r.score) else float(r.score)}) for r in rows.itertuples()]
    return dg.MetadataValue.table(records, schema=schema)


def dataset_metadata(dataset: Dataset, job_name: str | None = None) -> dict[str, Any]:
    """What every materialization names: the dataset, its content digest and the job that ran it
    (so `sweep_job`'s materializations of a pruning asset are told apart from `prune_job`'s)."""
    out: dict[str, Any] = {"dataset": dataset.source, "dataset_digest": dataset.digest(), "kind": dataset.kind}
    if job_name:
        out["job_name"] = job_name
    return out


def blas_threads() -> int:
    """BLAS/OpenMP threads a step uses in this process: resource `engine.blas_threads`, else
    $PRUNE_BLAS_THREADS (default 1).

    Measured on this 2-core machine with two other busy processes: the feature-selection step's
    cross-validated logistic regressions on 80k samples took 20.8 s with OpenBLAS' default two
    threads and 0.26 s with one (idle threads spin while the other core is taken). Dask workers
    run one thread each already; raise this on a machine the run has to itself.
    """
    return settings.blas_threads()


def current_job_name() -> str | None:
    """The running job's name (None outside a Dagster run, e.g. a unit test calling run_step)."""
    try:
        return dg.AssetExecutionContext.get().job_name
    except dg.DagsterInvariantViolationError:
        return None


def engine_metadata(engine: ComputeEngine | None, tasks_before: int = 0) -> dict[str, Any]:
    if engine is None:
        return {}
    out = engine.metadata()
    if "engine_workers" in out:
        out["engine_tasks"] = engine.tasks_run - tasks_before
    return out
