"""A worker's task metrics, from Celery's signals, on the worker's own port
(VIDCLINIC_WORKER_METRICS_PORT).

Tasks run in the worker's pool processes: each writes its figures to files in a folder the
worker makes at start (prometheus_client's multi-process mode), and the worker's main process
answers scrapes for all of them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task
from celery.signals import task_postrun, task_prerun
from prometheus_client import Counter, Histogram

from shared import metrics
from shared.config import Settings
from workers.app import SENT_AT, header

log = logging.getLogger(__name__)

TASKS = Counter(
    "vidclinic_tasks",
    "Tasks finished, by task name and outcome (succeeded, failed, retried, …)",
    ["task", "outcome"],
)
DURATION = Histogram("vidclinic_task_duration_seconds", "Time a task ran", ["task"])
QUEUED = Histogram(
    "vidclinic_task_queue_seconds",
    "Time from sending a task to a worker starting it (tasks sent with no countdown)",
    ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
#: Celery's end states as outcomes.
OUTCOMES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}

#: When each running task of this pool process started (perf_counter), by task id.
_started: dict[str, float] = {}


def _started_task(task_id: str, task: Task, **_: Any) -> None:
    _started[task_id] = time.perf_counter()
    sent_at = header(task, SENT_AT)
    if sent_at and not task.request.eta:
        QUEUED.labels(task.name).observe(max(0.0, time.time() - float(sent_at)))


def _finished_task(task_id: str, task: Task, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        DURATION.labels(task.name).observe(time.perf_counter() - started)
    TASKS.labels(task.name, OUTCOMES.get(state or "", (state or "unknown").lower())).inc()


def install(settings: Settings) -> None:
    """Count tasks from now on (the pool processes forked later inherit the receivers) and
    answer scrapes on the worker's port."""
    task_prerun.connect(_started_task, weak=False)
    task_postrun.connect(_finished_task, weak=False)
    metrics.serve(settings, settings.worker_metrics_port, metrics.multiprocess_registry())
    log.info("metrics on %s:%d", settings.metrics_address, settings.worker_metrics_port)
