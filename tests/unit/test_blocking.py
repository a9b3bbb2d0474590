"""Password checks do not freeze a gevent web worker's other sockets."""

from __future__ import annotations

import subprocess
import sys
import threading

from shared.blocking import off_the_loop

# Counts how often another greenlet got to run while five argon2 verifications were made.
UNDER_GEVENT = """
from gevent import monkey; monkey.patch_all()
import gevent
from shared.accounts import _hasher, _password_matches
from shared.blocking import off_the_loop
hashed = _hasher.hash("a-password-of-some-length")
ticks = 0
def tick():
    global ticks
    while True:
        gevent.sleep(0.001)
        ticks += 1
ticker = gevent.spawn(tick)
gevent.sleep(0.01)
inline = lambda: _password_matches(hashed, "wrong")
threaded = lambda: off_the_loop(_password_matches, hashed, "wrong")
for call in (inline, threaded):
    ticks = 0
    for _ in range(5):
        call()
    print(ticks)
"""


def test_off_the_loop_runs_inline_without_gevent() -> None:
    assert off_the_loop(threading.get_native_id) == threading.get_native_id()


def test_other_greenlets_run_while_a_password_is_checked() -> None:
    result = subprocess.run(
        [sys.executable, "-c", UNDER_GEVENT], capture_output=True, text=True, timeout=60, check=True
    )
    inline, off_loop = (int(n) for n in result.stdout.split())
    assert inline == 0  # checked on the loop, nothing else ran
    assert off_loop > 5
