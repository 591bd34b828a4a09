"""What a user sees, in a real browser (headless Chromium driven by Playwright): after a small
`prune-dagster run`, the Dagster asset page of `near_deduplicated` shows the removed-sample gallery
and the MLflow run page shows the dataset and links back to the Dagster run (issue 14)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_ui import BIN, ROOT, free_port, stop, wait_for

from prune_dagster.defs.resources import RUNS_VIEW_KEY

sys.path.insert(0, str(ROOT / "docs" / "images"))
from make_screenshots import BAD_CONFIG, BOUND_CONFIG, open_launchpad  # noqa: E402  (the README's images' script)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)")

FAST = ["--set", "pruned_dataset.score_epochs=2", "--set", "pruned_dataset.score_seeds=1",
        "--set", "trained_model.epochs=2", "--set", "trained_model.log_model=false"]


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def uis(tmp_path_factory):
    """A dirty-digits run through the CLI, then both UIs on free ports over its stores."""
    tmp = tmp_path_factory.mktemp("browser")
    dagster_port, mlflow_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "MLFLOW_TRACKING_URI", "PRUNE_OUTPUT_DIR")}
    env.update(PRUNE_DATA_DIR=str(tmp), PRUNE_DAGSTER_UI=f"http://127.0.0.1:{dagster_port}",
               PRUNE_MLFLOW_UI=f"http://127.0.0.1:{mlflow_port}")
    out = subprocess.run([str(BIN / "prune-dagster"), "run", "--dataset", "dirty-digits", *FAST], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Telemetry" not in out.stderr and "W1" not in out.stderr, out.stderr  # a quiet console
    mlflow_url = re.search(rf"http://127\.0\.0\.1:{mlflow_port}/#/experiments/\d+/runs/\w+", out.stdout).group(0)
    dagster_url = re.search(rf"http://127\.0\.0\.1:{dagster_port}/runs/[\w-]+", out.stdout).group(0)
    env["DAGSTER_HOME"] = str(tmp / "dagster_home")
    procs = [  # both start at once: each takes seconds to import its app
        start([str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(dagster_port)],
              env, tmp / "dagster.log"),
        start([str(BIN / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}", "-h", "127.0.0.1",
               "-p", str(mlflow_port)], env, tmp / "mlflow.log"),
    ]
    try:
        wait_for(f"{env['PRUNE_DAGSTER_UI']}/server_info", procs[0], tmp / "dagster.log")
        wait_for(f"{env['PRUNE_MLFLOW_UI']}/health", procs[1], tmp / "mlflow.log")
        yield env, mlflow_url, dagster_url
    finally:
        for proc in procs:
            stop(proc)


@pytest.fixture(scope="module")
def page(uis):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def test_asset_page_shows_the_gallery_and_links_to_mlflow(uis, page):
    env, mlflow_url, _ = uis
    # Dagster's first-visit community dialog may open at any moment: dismiss it whenever it covers the page
    page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
    page.goto(f"{env['PRUNE_DAGSTER_UI']}/assets/near_deduplicated", wait_until="networkidle")
    # the latest materialization's metadata renders after the page's first network-idle moment
    page.get_by_text("dirty-digits").first.wait_for(timeout=30000)
    assert "prune_job" in page.inner_text("body")
    page.get_by_text("[Show Markdown]").first.click()
    img = page.locator("img[src^='data:image/png']").first
    img.wait_for(timeout=15000)
    width, height = img.evaluate("e => [e.naturalWidth, e.naturalHeight]")
    assert width >= 8 * 64 and height >= 64  # a row of eight tiles of at least 64 px
    dialog = page.locator(".dagster-portal").last.inner_text()
    assert re.search(r"Showing 16 of \d+ removed", dialog) and "dup of" in dialog
    page.keyboard.press("Escape")
    page.goto(f"{env['PRUNE_DAGSTER_UI']}/assets/trained_model", wait_until="networkidle")
    page.locator(f"a[href='{mlflow_url}']").first.wait_for(timeout=15000)  # the MLflow run as a link


def test_mlflow_run_page_shows_dataset_and_links_back(uis, page):
    _, mlflow_url, dagster_url = uis
    page.goto(mlflow_url, wait_until="load")
    page.get_by_text(f"Dagster run: {dagster_url}").first.wait_for(timeout=30000)  # the run's description
    page.get_by_text("dirty-digits").first.wait_for(timeout=15000)  # the logged dataset input
    # The README's MLflow link: the experiment's runs URL lands on the training-runs table (the bare
    # experiment URL opens MLflow 3.17's GenAI overview) with the Dataset column filled in.
    page.goto(mlflow_url.split("/runs/")[0] + f"/runs?viewStateShareKey={RUNS_VIEW_KEY}", wait_until="load")
    page.get_by_text("Training runs").first.wait_for(timeout=30000)
    page.get_by_text("Dataset", exact=True).first.wait_for(timeout=15000)
    page.get_by_text(re.compile(r"dirty-digits \([0-9a-f]{8,}\)")).first.wait_for(timeout=15000)
    assert "/overview" not in page.url, page.url
    # the project's shared view: its columns without a click (MLflow's own default shows none of them)
    page.set_viewport_size({"width": 2000, "height": 1000})  # the grid renders only the columns in view
    for column in ("strategy", "test_accuracy", "retained_fraction"):
        page.get_by_role("columnheader", name=column).first.wait_for(timeout=15000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.get_by_text(re.compile(r"compare-dirty-digits-[0-9a-f]{8}")).first.wait_for(timeout=15000)


def test_launchpad_refuses_a_bad_choice_as_typed_and_a_bad_bound_at_launch(uis, page):
    env, _, _ = uis
    base = env["PRUNE_DAGSTER_UI"]
    open_launchpad(page, base, BAD_CONFIG)
    page.get_by_text("not in enum type").first.wait_for(timeout=30000)  # el2m, before any launch
    open_launchpad(page, base, BOUND_CONFIG)
    page.get_by_role("button", name="Launch Run").last.click()
    page.get_by_text("target_fraction accepts a number > 0 and <= 1").first.wait_for(timeout=30000)
    page.keyboard.press("Escape")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
