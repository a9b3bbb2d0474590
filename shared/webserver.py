"""Serving the Flask app with gunicorn's gevent worker: thousands of idle sockets per process."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from shared.config import Settings


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

        return create_app(self.settings)


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Run gunicorn in the foreground until SIGINT or SIGTERM."""
    _Gunicorn(
        settings,
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": "gevent",
            "worker_connections": 2000,
            "graceful_timeout": 5,
            "timeout": 30,
            "loglevel": settings.log_level.lower(),
            "proc_name": "vidclinic-web",
        },
    ).run()
