"""What a user sees for texts, in a real browser (headless Chromium driven by Playwright): after a small
`prune-dagster run` on a JSONL corpus with planted near copies, the Dagster asset page of
`near_deduplicated` shows the removed texts as a table, each beside the kept text it duplicates."""

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from test_browser import CHROMIUM, start
from test_ui import BIN, ROOT, free_port, stop, wait_for

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)")

FAST = ["--set", "trained_model.epochs=2", "--set", "trained_model.log_model=false",
        "--set", "representation.epochs=2", "--set", "representation.min_steps=40"]


def corpus(path: Path) -> None:
    from prune_dagster.fixtures.kinds import Planted, plant, text_frame, write

    frame, _ = plant(text_frame(400, seed=4), "text", seed=4, planted=Planted(exact=0.0, near=0.05, outliers=0.0,
                                                                               flips=0.0))
    write(frame, path)


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser_kinds")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "MLFLOW_TRACKING_URI", "PRUNE_OUTPUT_DIR")}
    env.update(PRUNE_DATA_DIR=str(tmp), PRUNE_DAGSTER_UI=f"http://127.0.0.1:{port}")
    corpus(tmp / "reviews.jsonl")
    import subprocess

    out = subprocess.run([str(BIN / "prune-dagster"), "run", "--dataset", str(tmp / "reviews.jsonl"), *FAST],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    env["DAGSTER_HOME"] = str(tmp / "dagster_home")
    proc = start([str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                 env, tmp / "dagster.log")
    try:
        wait_for(f"{env['PRUNE_DAGSTER_UI']}/server_info", proc, tmp / "dagster.log")
        yield env, tmp
    finally:
        stop(proc)


def test_the_text_gallery_is_a_table_beside_the_kept_text(ui):
    env, tmp = ui
    near = [json.loads(line) for line in (tmp / "reviews.jsonl").read_text().splitlines()]
    near_ids = {r["id"] for r in near if r["id"].startswith("near")}
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
            page.goto(f"{env['PRUNE_DAGSTER_UI']}/assets/near_deduplicated", wait_until="networkidle")
            page.get_by_text("reviews.jsonl").first.wait_for(timeout=30000)  # the materialization's metadata
            page.get_by_text("[Show Markdown]").first.click()
            dialog = page.locator(".dagster-portal").last
            dialog.get_by_text("kept sample it duplicates").first.wait_for(timeout=15000)
            text = dialog.inner_text()
            cells = page.locator(".dagster-portal table tr").all_inner_texts()
        finally:
            browser.close()
    assert "Showing" in text and "removed" in text
    removed_rows = [c for c in cells if "near_duplicate" in c]
    assert removed_rows, text[:2000]
    # a removed near copy is shown with its words and, beside it, the id and words of the kept text
    kept_cell = re.compile(r"\bt\d{7}: \w+ \w+")  # the kept text's id, then its words
    assert any(any(i in row for i in near_ids) and kept_cell.search(row) for row in removed_rows), removed_rows[:3]
    assert np.mean([len(r) > 60 for r in removed_rows]) > 0.9  # both texts are drawn, not only ids


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
