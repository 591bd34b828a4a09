"""The table kind's algorithms in one place: its feature space, row keys, near duplicates, SMOTE, column choice.

The code lives in the siblings: table_space.py (canonical values, row hashes, TableSpace),
table_neighbors.py (near-duplicate rows) and table_columns.py (column selection, SMOTE rows).
"""

from __future__ import annotations

from prune_dagster.core.kinds.table_columns import SELECT_METHODS, select_columns, smote_rows
from prune_dagster.core.kinds.table_neighbors import near_duplicate_pairs
from prune_dagster.core.kinds.table_space import (
    MAX_CATEGORIES,
    TableSpace,
    canonical_keys,
    same_rows,
    split_columns,
)

__all__ = ["MAX_CATEGORIES", "SELECT_METHODS", "TableSpace", "canonical_keys", "near_duplicate_pairs", "same_rows",
           "select_columns", "smote_rows", "split_columns"]
