"""Where a build's tasks run, and what keeps models apart on a GPU.

Tasks run in threads of the flow's own process, or on a dask.distributed cluster when one is
configured (`dask.address` in operations.yaml, or SOPREEL_DASK_ADDRESS). Either way a stage
that holds model weights is exclusive on its GPU:
- in one process, stages run one after another and each frees its models when it is done;
- across runs on one machine, a Prefect global concurrency limit is held from a model stage's
  first task to its release;
- on Dask, a model stage's tasks ask for a worker's `GPU` resource, and every worker frees the
  stage's models when the stage is done.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.tasks import Task

from flows.settings import GpuLimit, load_operations
from stages.registry import LoadedBackends

BACKENDS = LoadedBackends()   # models loaded once per process, shared by a stage's tasks
LOCAL_THREADS = 2


class _ThreadTimeoutNotice(logging.Filter):
    """Drop Prefect's warning, repeated for every task, that a time limit cannot interrupt a
    blocking call in a worker thread: sopreel's work is Python loops and ffmpeg runs read line
    by line, which a limit does interrupt (docs/prefect.md, "Retries, time limits...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Timeout of %s")
                    and "worker thread" in record.msg)


logging.getLogger("prefect.task_runs").addFilter(_ThreadTimeoutNotice())


def task_runner() -> TaskRunner:
    """A Dask runner when a scheduler address is configured, else a small thread pool."""
    address = load_operations().dask_address
    if address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=address)
    return ThreadPoolTaskRunner(max_workers=LOCAL_THREADS)


def _dask_client() -> Any | None:
    """The running flow's Dask client, or None when its tasks run in local threads."""
    context = FlowRunContext.get()
    runner = context.task_runner if context else None
    if type(runner).__name__ != "DaskTaskRunner":
        return None
    return runner.client  # type: ignore[union-attr]


def remote() -> bool:
    """The running flow's tasks run on a Dask cluster, not in this process."""
    return _dask_client() is not None


def submit_all(task: Task[..., Any], calls: list[tuple[Any, ...]],
               needs_gpu: bool) -> list[PrefectFuture[Any]]:
    """Submit one task run per call; on Dask, a model stage's runs ask for a GPU."""
    if needs_gpu and remote():
        import dask

        with dask.annotate(resources={"GPU": 1}):
            return [task.submit(*args) for args in calls]
    return [task.submit(*args) for args in calls]


def release_stage(stage: str) -> None:
    """Free the stage's models in this process (and on every Dask worker)."""
    BACKENDS.release(stage)
    client = _dask_client()
    if client is not None:
        client.run(_release_here, stage)


def _release_here(stage: str) -> None:
    BACKENDS.release(stage)


@contextlib.contextmanager
def gpu_lock(holds_model: bool, gpu: GpuLimit) -> Iterator[None]:
    """Hold the machine's GPU concurrency slot while a model stage runs in this process.

    On Dask the workers' GPU resources do this job, so nothing is held here."""
    if not holds_model or remote():
        yield
        return
    from prefect.concurrency.sync import concurrency

    ensure_limit(gpu)
    with concurrency(gpu.name, occupy=1, strict=True):
        yield


def ensure_limit(gpu: GpuLimit) -> None:
    """Create the global concurrency limit the first time a machine runs a model stage."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(gpu.name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):   # another run made it meanwhile
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=gpu.name, limit=gpu.slots))
