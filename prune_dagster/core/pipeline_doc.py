"""The step table of the README and docs/steps.md, generated from `core/pipeline.py`.

Between the two markers below, each page holds the table `step_table()` makes from the pipeline and
the steps' Params (name, stage, what it removes, what the ledger's score means, the defaults worth
knowing). `python -m prune_dagster.core.pipeline_doc` (`make docs`) rewrites it; a test fails when a
page and the pipeline differ, so no hand-written step list can drift.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prune_dagster.core import pipeline

BEGIN = "<!-- steps-table: generated from core/pipeline.py by `make docs` (edit the steps, not the table) -->"
END = "<!-- /steps-table -->"
# Each page and its table: the README's names what each step removes; docs/steps.md's says how.
PAGES = {"README.md": "removes", "docs/steps.md": "description"}
# The shared representation is an asset of the graph but not a pruning step: its row is written here.
REPRESENTATION = {"removes": "nothing: K-fold out-of-fold probabilities, embeddings and EL2N that the steps below "
                             "share",
                  "description": "Out-of-fold probabilities, embeddings and EL2N of every training sample from "
                                 "K-fold training of a small model (`features: learned`), your own embeddings "
                                 "(`provided`), or nothing (`pixels`: the steps compare raw features). Removes "
                                 "nothing.",
                  "key_settings": ("features", "folds", "epochs")}


def _default(params: type, key: str) -> str:
    """The field's default, or each kind's value where the default is a sentinel (`Params.KIND_DEFAULTS`)."""
    per_kind = {kind: values[key] for kind, values in params.KIND_DEFAULTS.items() if key in values}
    if not per_kind:
        return f"{key}={params.model_fields[key].default}"
    return f"{key}=" + " / ".join(f"{value} ({kind})" for kind, value in per_kind.items())


def _defaults(params: type, key_settings: tuple[str, ...]) -> str:
    fields = params.model_fields
    shown = [_default(params, k) for k in key_settings if k in fields]
    return ", ".join(shown) + ("" if fields.get("enabled") is None or fields["enabled"].default else " (off)")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def step_table(steps: tuple[pipeline.Step, ...] = pipeline.PIPELINE, column: str = "removes") -> str:
    """The markdown table of the steps, in order, the representation's row where it is computed; `column`:
    `removes` (what each step removes) or `description` (how it decides: the asset's description)."""
    from prune_dagster.core.training.shared import SharedRepresentationParams

    head = "removes" if column == "removes" else "what it does"
    rows = [f"| step | stage | {head} | ledger `score` | defaults worth knowing |", "|---|---|---|---|---|"]
    for step in steps:
        rows.append(f"| `{step.asset}` | {step.stage} | {_cell(getattr(step, column))} | "
                    f"{_cell(step.score_meaning)} | {_cell(_defaults(step.params, step.key_settings))} |")
        if step.asset == pipeline.REPRESENTATION_AFTER:
            rows.append(f"| `{pipeline.REPRESENTATION}` | cleaning | {_cell(REPRESENTATION[column])} | - | "
                        f"{_defaults(SharedRepresentationParams, REPRESENTATION['key_settings'])} |")
    return "\n".join(rows)


def with_table(text: str, table: str) -> str:
    """`text` with the part between the markers replaced by `table` (ValueError when a marker is missing)."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"the page has no step-table markers ({BEGIN} ... {END})")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def main(root: Path) -> list[str]:
    """Rewrite the table in every page under `root`; returns the pages that changed."""
    changed = []
    for name, column in PAGES.items():
        path = root / name
        old = path.read_text()
        new = with_table(old, step_table(column=column))
        if new != old:
            path.write_text(new)
            changed.append(name)
    return changed


if __name__ == "__main__":
    print("rewrote:", ", ".join(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())) or "nothing")
