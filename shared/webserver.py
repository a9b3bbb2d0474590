"""Serving the Flask app with gunicorn's gevent worker: thousands of idle sockets per process."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from shared import logs
from shared.addresses import loopback_host
from shared.config import Settings
from shared.metrics import MULTIPROC_VARIABLE


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Imported here, in the worker, after gevent has patched the standard library.
        from web import create_app

        app = create_app(self.settings)
        # What is loaded by now (the app, its libraries: ~140,000 objects) lives as long as the
        # process. Out of the collector's sight, a full collection scans only what sockets and
        # requests made since; with them it took ~0.1 s more, with the whole loop stopped.
        gc.freeze()
        return app


log = logging.getLogger(__name__)


def secure_context_warning(settings: Settings, host: str) -> str | None:
    """What to tell an operator who serves plain HTTP beyond this machine, or None.

    Browsers give a page camera and microphone only in a secure context: https://, or
    http://localhost and 127.0.0.1. Reached over plain HTTP at any other address, every page
    loads and no call has media. VIDCLINIC_SECURE_COOKIES says TLS is terminated in front.
    """
    if settings.secure_cookies or loopback_host(host, resolve=False):
        return None
    return (
        f"serving plain HTTP on {host or 'every address'} without VIDCLINIC_SECURE_COOKIES: "
        "browsers give camera and microphone only to https:// pages (or http://localhost), so "
        "people reaching this address over plain HTTP get no video or sound. Put a TLS proxy "
        "in front and set VIDCLINIC_SECURE_COOKIES=true (see infra/README.md, Web behind TLS)"
    )


def serve(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    metrics_dir: str | None = None,
    announce: bool = True,
) -> None:
    """Run `workers` web processes on one port until SIGINT or SIGTERM.

    Each is a gunicorn master with one gevent worker, its listening socket bound with
    SO_REUSEPORT: the kernel spreads new connections evenly over them. (One master with
    several workers sharing a socket lets whichever worker is idle take every connection:
    all 20 dashboards once landed on one of two workers.)

    All of them write their metrics into `metrics_dir` (prometheus_client's multi-process
    mode), so a scrape that reaches any of them answers for all; without one, a fresh folder
    is made, and removed at the end (figures of an earlier run must not be added in).
    """
    warning = secure_context_warning(settings, host) if announce else None
    if warning:
        logs.configure(settings, "web")
        log.warning(warning)
    if metrics_dir is None:
        metrics_dir = tempfile.mkdtemp(prefix="vidclinic-web-metrics-")
        try:
            serve(settings, host, port, workers, metrics_dir, announce=False)
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        return
    # Read by prometheus_client when it is first imported: in the gevent workers, later.
    os.environ[MULTIPROC_VARIABLE] = metrics_dir
    if workers == 1:
        _serve_one(settings, host, port)
        return
    command = [sys.executable, "-m", "shared.cli", "web", "--workers", "1", "--child"]
    children = [
        subprocess.Popen(
            [*command, "--host", host, "--port", str(port), "--metrics-dir", metrics_dir]
        )
        for _ in range(workers)
    ]
    stopping = False

    def _stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            child.wait()
    if not stopping:
        raise SystemExit(1)  # a web process died: let the supervisor above restart us all


def _child_exit(_server: Any, worker: Any) -> None:
    """A gevent worker ended (gunicorn starts another): its open-socket gauges stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _serve_one(settings: Settings, host: str, port: int) -> None:
    logs.configure(settings, "web")

    class Logger(glogging.Logger):
        """gunicorn's own lines (start, workers, errors) in the settings' format too."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            self.error_log.handlers = [logs.handler(settings, "web")]

    _Gunicorn(
        settings,
        {
            "bind": f"{host}:{port}",
            "workers": 1,
            "worker_class": "gevent",
            "worker_connections": settings.web_connections,
            "reuse_port": True,
            # Several masters on one machine would fight over gunicorn's one control socket.
            "control_socket_disable": True,
            "graceful_timeout": 5,
            "timeout": 30,
            "loglevel": settings.log_level.lower(),
            "proc_name": "vidclinic-web",
            "child_exit": _child_exit,
            "logger_class": Logger,
        },
    ).run()
