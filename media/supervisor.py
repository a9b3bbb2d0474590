"""`vidclinic media --processes N`: N media node processes on one host, started, watched and
stopped together.

A node process uses about one core (one Python event loop), so a host runs one per core. Each
child is a whole node (its own id, registry entry and inbox): the children share nothing but
the host. A child that dies is started again under the same id (its calls have moved to other
nodes by then, or move at its start); one that exits cleanly (drained) is not. SIGTERM or
SIGINT is passed to every child, and the supervisor waits for all of them: each hands its
calls to other nodes before it exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: Seconds before a child that died is started again; doubled while it keeps dying young.
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
#: A child that ran this long before dying is not dying young: its next restart is quick.
SETTLED = 60.0
#: Seconds the children have to hand their calls over and exit before they are killed.
STOP_TIMEOUT = 20.0
_PR_SET_PDEATHSIG = 1


def default_processes() -> int:
    """One per core this process may run on (a CPU affinity mask or cgroup cpuset counts)."""
    return len(os.sched_getaffinity(0))


def child_ids(base: str, processes: int) -> list[str]:
    """The children's node ids: `<base>-1` … `<base>-N` (stable across their restarts)."""
    return [f"{base}-{index}" for index in range(1, processes + 1)]


def _die_with_parent() -> None:
    """In the child before exec: a supervisor killed outright takes its children with it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One media node process of the supervisor's."""

    node_id: str
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = RESTART_DELAY
    due: float = 0.0
    done: bool = False
    argv: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.popen = subprocess.Popen(self.argv, env=self.env, preexec_fn=_die_with_parent)
        self.started = time.monotonic()
        log.info("media node %s started (pid %d)", self.node_id, self.popen.pid)


def supervise(processes: int, base: str, metrics_port: int = 0) -> int:
    """Run `processes` media nodes until SIGTERM or SIGINT, or until all have drained."""
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = []
    for index, node_id in enumerate(child_ids(base, processes)):
        env = {**os.environ, "VIDCLINIC_MEDIA_NODE_ID": node_id}
        if metrics_port:
            env["VIDCLINIC_MEDIA_METRICS_PORT"] = str(metrics_port + index)
        argv = [sys.executable, "-m", "shared.cli", "media", "--processes", "1"]
        children.append(Child(node_id, env, argv=argv))
    for child in children:
        child.start()
    while not stopping and not all(child.done for child in children):
        now = time.monotonic()
        for child in children:
            if child.done:
                continue
            if child.popen is None:
                if now >= child.due:
                    child.start()
                continue
            code = child.popen.poll()
            if code is None:
                continue
            if code == 0:
                log.info("media node %s exited (drained)", child.node_id)
                child.done = True
                continue
            lived = now - child.started
            if lived > SETTLED:
                child.delay = RESTART_DELAY
            child.due = now + child.delay
            child.delay = min(child.delay * 2, MAX_RESTART_DELAY)
            log.error(
                "media node %s exited with %d after %.0f s: starting it again in %.0f s",
                child.node_id,
                code,
                lived,
                child.due - now,
            )
            child.popen = None
        time.sleep(0.2)
    running = [c.popen for c in children if c.popen is not None and c.popen.poll() is None]
    for popen in running:
        with contextlib.suppress(ProcessLookupError):
            popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for popen in running:
        try:
            popen.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    return 0
