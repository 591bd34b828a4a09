"""The table kind on real data: UCI Adult (benchmarks/real_data.py, the official train / test split).

    python benchmarks/real_table.py --part job                    # off, default, random, each step alone; 3 seeds
    python benchmarks/real_table.py --part job --seeds 0 --configs off default
    python benchmarks/real_table.py --part defects                # planted defects vs cleanlab's Datalab

Prints tables and writes benchmarks/results/real_table_<part>.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kinds_job  # noqa: E402
import real_data  # noqa: E402

EXTRA: list[str] = ["raw_dataset.split_column=split"]  # Adult's own train / test split

if __name__ == "__main__":
    sys.exit(kinds_job.main("table", real_data.adult, EXTRA, __doc__))
