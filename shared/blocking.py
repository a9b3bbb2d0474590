"""Running CPU-heavy calls without stalling a gevent web worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def off_the_loop(function: Callable[..., T], *args: object) -> T:
    """Call `function` on a real OS thread when gevent drives this process, else directly.

    Under gunicorn's gevent worker every socket of the process shares one OS thread: a 50 ms
    argon2 verification there would freeze every open dashboard and call for 50 ms. argon2
    releases the GIL, so a native thread lets the loop carry on meanwhile.
    """
    try:
        from gevent import get_hub
        from gevent.monkey import is_module_patched
    except ImportError:  # pragma: no cover - gevent is a dependency
        return function(*args)
    if not is_module_patched("threading"):
        return function(*args)
    result: T = get_hub().threadpool.apply(function, args)
    return result
