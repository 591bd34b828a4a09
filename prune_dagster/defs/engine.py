"""The `engine` resource: where the data steps' blockwise work runs.

Steps cut their work into items and call a Mapper (prune_dagster/core/infra/parallel.py). This resource
supplies that Mapper: `serial_map` in this process by default, or one that runs the items on a Dask
distributed cluster when an address is configured. Results come back in item order, so both give
the same kept ids and ledger.

`address`:
- "" → `$PRUNE_ENGINE_ADDRESS` (prune_dagster/settings.py), and if that is unset too, in-process
  ("in-process" forces it);
- "local" or "local:N" → a dask.distributed LocalCluster of N worker processes (default 2) started
  for the run and shut down after it;
- "tcp://host:port" (any Dask comm address) → a Client on an existing scheduler (dask-kubernetes,
  dask-jobqueue, `dask scheduler`); the scheduler and workers are left running;
- "scheduler-file:/path/scheduler.json" → the scheduler a `dask scheduler --scheduler-file` wrote
  (how batch clusters usually hand the address to the job).
Workers must be able to import prune_dagster and the same library versions (the work functions
are sent by reference).
"""

import inspect
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dagster as dg
import numpy as np
from pydantic import Field, PrivateAttr

from prune_dagster import settings
from prune_dagster.core.infra.parallel import ArrayRef, Mapper, as_array, serial_map
from prune_dagster.core.steps.base import bind_mapper
from prune_dagster.core.training.train import set_default_threads

ENV_VAR = "PRUNE_ENGINE_ADDRESS"  # named in messages; read in settings.py
IN_PROCESS = "in-process"
DEFAULT_LOCAL_WORKERS = 2
# Items bigger than this are scattered to the workers first rather than embedded in the task graph
# (Dask warns when a task graph carries large data; scattered data lives on the workers only).
SCATTER_ITEMS_OVER_BYTES = 64 * 1024

log = logging.getLogger(__name__)


class EngineUnavailableError(RuntimeError):
    """The configured Dask scheduler cannot be reached, or the address cannot be understood."""


def parse_address(address: str) -> tuple[str, Any]:
    """("in-process", None) | ("local", n_workers) | ("scheduler-file", path) | ("remote", address)."""
    address = address.strip()
    if address in ("", IN_PROCESS):
        return IN_PROCESS, None
    if address == "local" or address.startswith("local:"):
        raw = address.partition(":")[2] or str(DEFAULT_LOCAL_WORKERS)
        if not raw.isdigit() or int(raw) < 1:
            raise EngineUnavailableError(f"engine address {address!r}: expected 'local' or 'local:N' with N >= 1")
        return "local", int(raw)
    if address.startswith("scheduler-file:"):
        return "scheduler-file", address.partition(":")[2]
    if "://" in address:
        return "remote", address
    raise EngineUnavailableError(
        f"engine address {address!r} not understood: expected '' (in-process), 'local', 'local:N', "
        "'tcp://host:port' or 'scheduler-file:/path/scheduler.json'")


class ComputeEngine(dg.ConfigurableResource):
    """Runs the data steps' blockwise work in-process or on a Dask distributed cluster."""

    address: str = Field(default="", description="'' = $PRUNE_ENGINE_ADDRESS or in-process; 'in-process'; "
                                                 "'local' / 'local:N' (a LocalCluster of N worker processes "
                                                 "for this run); 'tcp://host:port' (an existing Dask "
                                                 "scheduler); 'scheduler-file:/path/scheduler.json'")
    connect_timeout_s: float = Field(default=10.0, description="seconds to wait for the scheduler")
    block_rows: int = Field(default=0, ge=0, description="rows per work item for steps that take `block_rows`; "
                                                         "0 = each step's default")
    blas_threads: int = Field(default=0, ge=0, description="BLAS/OpenMP threads per step in this process; "
                                                           "0 = $PRUNE_BLAS_THREADS or 1")
    torch_threads: int = Field(default=0, ge=0, description="torch intra-op threads in this process; "
                                                            "0 = $PRUNE_TORCH_THREADS, else torch's default")

    _client: Any = PrivateAttr(default=None)
    _cluster: Any = PrivateAttr(default=None)
    _label: str = PrivateAttr(default=IN_PROCESS)
    _mapper: Any = PrivateAttr(default=None)

    def resolved_address(self) -> str:
        return self.address.strip() or settings.engine_address()

    def blas_limit(self) -> int:
        """BLAS/OpenMP threads a step may use in this process."""
        return self.blas_threads or settings.blas_threads()

    # -- lifecycle: one client (and, for "local", one cluster) per run ---------------------------

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        set_default_threads(self.torch_threads or settings.torch_threads())  # process-wide, like torch's
        self.start()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def start(self) -> None:
        """Connect (or start the local cluster). Also usable outside Dagster, with `close()`."""
        address = self.resolved_address()
        kind, arg = parse_address(address)
        if kind == IN_PROCESS:
            return
        from distributed import Client, LocalCluster

        if kind == "local":
            try:
                # The dashboard (and the scheduler's HTTP server) on a free localhost port: two runs at once
                # must not fight over :8787, and nothing is exposed beyond this machine.
                self._cluster = LocalCluster(n_workers=arg, threads_per_worker=1, processes=True,
                                             host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                             silence_logs=logging.ERROR)
            except Exception as exc:  # e.g. worker processes cannot start (spawn needs an importable __main__)
                self.close()
                raise EngineUnavailableError(f"engine {address!r}: could not start a local Dask cluster of {arg} "
                                             f"worker processes ({exc})") from exc
            self._client = Client(self._cluster, set_as_default=False)
            self._label = f"local:{arg} ({self._cluster.scheduler_address})"
            log.info("local Dask cluster %s, dashboard %s", self._label, self._cluster.dashboard_link)
            return
        try:
            if kind == "scheduler-file":
                self._client = Client(scheduler_file=arg, timeout=self.connect_timeout_s, set_as_default=False)
                self._label = self._client.scheduler.address
            else:
                self._client = Client(arg, timeout=self.connect_timeout_s, set_as_default=False)
                self._label = arg
        except (OSError, TimeoutError, ValueError) as exc:
            self.close()
            raise EngineUnavailableError(
                f"cannot reach the Dask scheduler at {address!r} within {self.connect_timeout_s:g}s ({exc}). "
                f"Start it, fix the engine address (resource `engine`, or ${ENV_VAR}), or set it to '' to run "
                "in-process.") from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = self._mapper = None
        self._label = IN_PROCESS

    # -- what the assets use -------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The distributed.Client, or None when running in-process."""
        return self._client

    @property
    def tasks_run(self) -> int:
        """Work items this resource has sent to the cluster so far (0 in-process)."""
        return self._mapper.tasks if self._mapper is not None else 0

    def mapper(self) -> Mapper:
        if self._client is None:
            if parse_address(self.resolved_address())[0] != IN_PROCESS:
                raise EngineUnavailableError(f"engine {self.resolved_address()!r} is not started; call start() "
                                             "(Dagster does it at the start of a run)")
            return serial_map
        if self._mapper is None:
            self._mapper = DaskMapper(self._client, self._label)
        return self._mapper

    def supply(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn` with this engine's mapper (and block size, where `fn` accepts `block_rows`) bound by name
        (`core.steps.base.bind_mapper`: a function without a `mapper` parameter is refused)."""
        return bind_mapper(fn, self.mapper(), self.block_rows)

    def metadata(self) -> dict[str, Any]:
        """Which engine ran a step, for the asset's metadata."""
        if self._client is None:
            return {"engine": IN_PROCESS}
        return {"engine": self._label, "engine_workers": len(self._client.nthreads())}


class DaskMapper:
    """The Mapper contract on a Dask cluster: `fn(item, **shared)` per item, results in item order."""

    def __init__(self, client: Any, label: str) -> None:
        self.client, self.label = client, label
        self.tasks = 0
        self._visible: dict[str, bool] = {}  # ArrayRef path → every worker sees the same file

    def __call__(self, fn: Callable[..., Any], items: Sequence[Any],
                 shared: Mapping[str, Any] | None = None) -> list[Any]:
        from dask.sizeof import sizeof
        from distributed import Client

        client = self.client
        items = list(items)
        if not items:
            return []
        shared = {k: self._reachable(v) for k, v in (shared or {}).items()}
        clash = set(shared) & set(inspect.signature(Client.map).parameters)
        if clash:  # client.map would take these as its own options instead of passing them to fn
            raise ValueError(f"shared argument names {sorted(clash)} clash with distributed.Client.map's parameters")
        # Shared arguments go to every worker once; each item's task refers to them by key.
        shared_futures = {k: client.scatter([v], broadcast=True, hash=False)[0] for k, v in shared.items()}
        if any(sizeof(item) > SCATTER_ITEMS_OVER_BYTES for item in items):
            items = client.scatter(items, hash=False)  # data first, then small tasks that refer to it
        futures = client.map(fn, items, pure=False, **shared_futures)
        self.tasks += len(futures)
        name = getattr(fn, "__qualname__", repr(fn))
        try:
            return client.gather(futures)
        except Exception as exc:
            # Name the first failed item in item order (gather raises whichever failed first in time).
            failed = [i for i, f in enumerate(futures) if f.status == "error"]
            if not failed:  # cancelled, workers lost, scheduler gone
                exc.add_note(f"while running {len(items)} items of {name} on the Dask cluster at {self.label}")
                raise
            first = futures[failed[0]].exception()
            first.add_note(f"in item {failed[0]} of {len(items)} of {name}, on the Dask cluster at {self.label}")
            raise first.with_traceback(futures[failed[0]].traceback()) from None
        finally:
            client.cancel(futures)

    def _reachable(self, value: Any) -> Any:
        """An ArrayRef stays a reference only if every worker sees the same file at that path (one
        machine, or a shared filesystem); otherwise its bytes are shipped, once per call."""
        if not isinstance(value, ArrayRef):
            return value
        if value.path not in self._visible:
            local = os.path.getsize(value.path)
            sizes = self.client.run(os.path.getsize, value.path, on_error="return")
            self._visible[value.path] = all(size == local for size in sizes.values())
            if not self._visible[value.path]:
                log.warning("Dask workers at %s cannot read %s; shipping its %d bytes instead (mount it at the "
                            "same path on the workers to avoid this)", self.label, value.path, local)
        return value if self._visible[value.path] else np.asarray(as_array(value))
