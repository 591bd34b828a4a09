"""The text kind on real data: Rotten Tomatoes snippets (benchmarks/real_data.py; stratified 80 / 20 split per seed).

    python benchmarks/real_text.py --part job                    # off, default, random, each step alone; 3 seeds
    python benchmarks/real_text.py --part job --seeds 0 --configs off default
    python benchmarks/real_text.py --part defects                # planted defects vs cleanlab's Datalab

Prints tables and writes benchmarks/results/real_text_<part>.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kinds_job  # noqa: E402
import real_data  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
EXTRA: list[str] = []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["job", "defects"], default="job")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=list(kinds_job.configs()))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    command = "python benchmarks/real_text.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = args.out or RESULTS / f"real_text_{args.part}.json"
    if args.part == "job":
        kinds_job.run_all(real_data.rotten_tomatoes(), args.configs, args.seeds, EXTRA, out, command)
    else:
        import kinds_defects  # noqa: PLC0415

        kinds_defects.run_all("text", args.seeds, out, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
