"""The text kind on real data: Rotten Tomatoes snippets (benchmarks/real_data.py; stratified 80 / 20 split per seed).

    python benchmarks/real_text.py --part job                    # off, default, random, each step alone; 3 seeds
    python benchmarks/real_text.py --part job --seeds 0 --configs off default
    python benchmarks/real_text.py --part defects                # planted defects vs cleanlab's Datalab

Prints tables and writes benchmarks/results/real_text_<part>.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kinds_job  # noqa: E402
import real_data  # noqa: E402

EXTRA: list[str] = []

if __name__ == "__main__":
    sys.exit(kinds_job.main("text", real_data.rotten_tomatoes, EXTRA, __doc__))
