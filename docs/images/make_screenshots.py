"""Screenshots for the README, taken in headless Chromium (Playwright) against a real `dagster-webserver`.

    .venv/bin/python docs/images/make_screenshots.py [--chromium /usr/bin/chromium]

Writes two images of prune_job's Launchpad, config for pruned_dataset:
- launchpad-refusal.png: `strategy: el2m` and `target_fraction: 1.5`, as typed. The as-you-type
  check reads the config schema (types, choices): it names the unknown strategy; it has no bounds.
- launchpad-refusal-launch.png: `target_fraction: 1.5` alone, after **Launch Run**: the bound is
  refused while Dagster resolves the config (defs/config.py's config mapping), before a run exists.
And with `--mlflow` (trains seven small digits models first, about two minutes):
- mlflow-comparison.png: the per-dataset comparison run `compare-digits-…`: its figure, every model
  of the dataset, test accuracy against retained fraction per strategy (defs/comparison.py).
- mlflow-runs.png: the runs table at the URL `model_evaluation` links (`mlflow_runs_table`), in the
  project's shared view of columns.
Each UI runs on a free 127.0.0.1 port with a temporary DAGSTER_HOME, data folder and MLflow store
and is stopped afterwards.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BAD_CONFIG = """ops:
  pruned_dataset:
    config:
      strategy: el2m
      target_fraction: 1.5
"""
BOUND_CONFIG = "ops:\n  pruned_dataset:\n    config:\n      target_fraction: 1.5\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited early (code {proc.returncode})")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s")


def open_launchpad(page, base: str, config: str) -> None:
    page.goto(f"{base}/locations/prune_dagster.definitions/jobs/prune_job/playground", wait_until="networkidle")
    skip = page.get_by_role("button", name="Skip")  # Dagster's first-visit community dialog
    if skip.count():
        skip.first.click()
    page.locator(".CodeMirror").first.wait_for(timeout=60000)
    page.evaluate("yaml => document.querySelector('.CodeMirror').CodeMirror.setValue(yaml)", config)


def launchpad_refusals(page, base: str, folder: Path) -> None:
    """The two screenshots (module docstring); raises if the page does not show the refusal."""
    open_launchpad(page, base, BAD_CONFIG)
    page.get_by_text("not in enum type").first.wait_for(timeout=60000)
    time.sleep(1)  # let the editor's line markers settle
    page.screenshot(path=str(folder / "launchpad-refusal.png"))
    open_launchpad(page, base, BOUND_CONFIG)
    time.sleep(2)  # the as-you-type check finds nothing to refuse here
    page.get_by_role("button", name="Launch Run").last.click()
    page.get_by_text("target_fraction accepts a number > 0 and <= 1").first.wait_for(timeout=60000)
    time.sleep(1.5)  # the error dialog fades in
    page.screenshot(path=str(folder / "launchpad-refusal-launch.png"))


MODELS = [("random", 0.3), ("el2n", 0.3), ("random", 0.6), ("el2n", 0.6), ("el2n", 0.3), ("random", 1.0)]


@contextmanager
def serve(cmd: list[str], env: dict, health: str) -> Iterator[None]:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for(health, proc)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def train_models(home: Path, mlflow_ui: str) -> str:
    """prune_job once on digits, then pruned_dataset → model_evaluation again per MODELS entry (the
    cleaned set reused); returns the comparison run's URL and the runs table's."""
    os.environ.update(DAGSTER_HOME=str(home), PRUNE_OUTPUT_DIR=str(home / "out"), PRUNE_MLFLOW_UI=mlflow_ui,
                      MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}", PRUNE_DATASET="digits")
    import dagster as dg

    from prune_dagster.definitions import defs

    job = defs.resolve_job_def("prune_job")
    again = [dg.AssetKey(k) for k in ("pruned_dataset", "trained_model", "model_evaluation")]
    with dg.DagsterInstance.get() as instance:
        for i, (strategy, fraction) in enumerate([("el2n", 1.0), *MODELS]):
            ops = {"pruned_dataset": {"config": {"strategy": strategy, "target_fraction": fraction,
                                                 "score_epochs": 2, "score_seeds": 1, "seed": i}},
                   "trained_model": {"config": {"epochs": 4, "log_model": False, "seed": i}}}
            result = job.execute_in_process(instance=instance, run_config={"ops": ops},
                                            asset_selection=again if i else None)
        (mat,) = result.asset_materializations_for_node("model_evaluation")
    return mat.metadata["mlflow_dataset_comparison"].value, mat.metadata["mlflow_runs_table"].value


def mlflow_comparison(page, url: str, folder: Path) -> None:
    page.goto(f"{url}/artifacts/accuracy_vs_retained_fraction.png", wait_until="load")
    page.locator("img[src^='blob:']").first.wait_for(timeout=60000)  # the artifact, fetched by the page
    time.sleep(2)
    page.screenshot(path=str(folder / "mlflow-comparison.png"))


def mlflow_runs(page, url: str, folder: Path) -> None:
    """The runs table as the README's link opens it: the project's shared view of columns."""
    page.set_viewport_size({"width": 2400, "height": 640})  # the grid draws only the columns in view
    page.goto(url, wait_until="load")
    for column in ("strategy", "test_accuracy", "retained_fraction"):
        page.get_by_role("columnheader", name=column).first.wait_for(timeout=30000)
    time.sleep(2)
    page.screenshot(path=str(folder / "mlflow-runs.png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="folder for the images")
    parser.add_argument("--mlflow", action="store_true",
                        help="also mlflow-comparison.png and mlflow-runs.png (trains models first)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        home = Path(tmp)
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 800})
        env = {**os.environ, "DAGSTER_HOME": tmp, "PRUNE_DATA_DIR": tmp}
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        with serve([str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                   env, f"http://127.0.0.1:{port}/server_info"):
            launchpad_refusals(page, f"http://127.0.0.1:{port}", args.out)
        print(f"wrote launchpad-refusal.png and launchpad-refusal-launch.png in {args.out}")
        if args.mlflow:
            ui = f"http://127.0.0.1:{port}"
            url, runs_url = train_models(home, ui)
            with serve([str(BIN / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
                        "-h", "127.0.0.1", "-p", str(port)], env, f"{ui}/health"):
                mlflow_comparison(page, url, args.out)
                mlflow_runs(page, runs_url, args.out)
            print(f"wrote mlflow-comparison.png and mlflow-runs.png in {args.out}")
        browser.close()


if __name__ == "__main__":
    main()
