"""The real UIs: `dagster dev` (webserver + daemon) driven through GraphQL as the UI's Launch button
does, and `mlflow server` over the same tracking store, queried through its REST API."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import FAST_CONFIG

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, payload: dict | None = None, timeout: float = 30) -> dict:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited early:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout}s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """Stop the whole process group (dagster dev starts a webserver, a daemon and code servers)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    (tmp / "dagster_home").mkdir()
    # Telemetry off, as the CLI's own home has it: the suite must not try to post outside.
    (tmp / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(tmp / "dagster_home"), "PRUNE_OUTPUT_DIR": str(tmp / "out"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "PRUNE_DATASET": "digits"}
    return tmp, env


@pytest.fixture(scope="module")
def dagster_ui(stores):
    tmp, env = stores
    port = free_port()
    log = tmp / "dagster_dev.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p",
                                 str(port)], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/server_info", proc, log)
        yield f"http://127.0.0.1:{port}/graphql"
    finally:
        stop(proc)


def gql(url: str, query: str, variables: dict | None = None) -> dict:
    out = http_json(url, {"query": query, "variables": variables or {}})
    assert "errors" not in out, out["errors"]
    return out["data"]


LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""


@pytest.fixture(scope="module")
def launched_run(dagster_ui):
    locations = gql(dagster_ui, """{ workspaceOrError { ... on Workspace { locationEntries {
        name locationOrLoadError { __typename ... on RepositoryLocation { repositories { name } } } } } } }""")
    entry = locations["workspaceOrError"]["locationEntries"][0]
    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
    params = {
        "selector": {"repositoryLocationName": entry["name"],
                     "repositoryName": entry["locationOrLoadError"]["repositories"][0]["name"],
                     "jobName": "prune_job"},
        "runConfigData": {"ops": FAST_CONFIG},
    }
    launched = gql(dagster_ui, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    status, deadline = None, time.time() + 300
    while time.time() < deadline:
        status = gql(dagster_ui, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                     {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    return run_id, status


def failure_messages(url: str, run_id: str) -> list[str]:
    events = gql(url, """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
        __typename ... on ExecutionStepFailureEvent { error { message } }
        ... on RunFailureEvent { message } ... on EngineEvent { message error { message } } } } } }""",
                 {"id": run_id})["logsForRun"]["events"]
    return [json.dumps(e) for e in events if "Failure" in e["__typename"] or (e.get("error") or {})]


def test_launch_prune_job_through_graphql(dagster_ui, launched_run):
    run_id, status = launched_run
    assert status == "SUCCESS", failure_messages(dagster_ui, run_id)
    for asset in ("raw_dataset", "pruned_dataset", "model_evaluation"):
        data = gql(dagster_ui, """query($path: [String!]!) { assetOrError(assetKey: {path: $path}) {
            ... on Asset { assetMaterializations(limit: 1) { runId } } } }""", {"path": [asset]})
        assert data["assetOrError"]["assetMaterializations"][0]["runId"] == run_id, asset


def test_mlflow_server_finds_the_run(stores, launched_run):
    tmp, env = stores
    run_id, status = launched_run
    assert status == "SUCCESS"
    summary = json.loads((tmp / "out" / "runs" / run_id / "summary.json").read_text())
    port = free_port()
    log = tmp / "mlflow_server.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri", env["MLFLOW_TRACKING_URI"],
                                 "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                cwd=tmp, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/health", proc, log)
        run = http_json(f"{base}/api/2.0/mlflow/runs/get?run_id={summary['mlflow_run_id']}")["run"]
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert metrics["test_accuracy"] == pytest.approx(summary["test_accuracy"])
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert tags["dagster_run_id"] == run_id
        found = http_json(f"{base}/api/2.0/mlflow/runs/search",
                          {"experiment_ids": [run["info"]["experiment_id"]],
                           "filter": "metrics.retained_fraction <= 1.0"})
        assert summary["mlflow_run_id"] in {r["info"]["run_id"] for r in found["runs"]}
    finally:
        stop(proc)
