"""Benchmark: web memory per open patient socket, alone (no dashboards, no load).

Starts the whole system with one web process, makes N waiting patients' spaces in Redis, opens
a few sockets to warm the process up, then the rest in two halves, each followed by a pause for
the process to settle; prints how much the web process's RSS grew per socket in each half.

Run: .venv/bin/python -m tests.bench.socket_memory [--patients 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import tempfile
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

from shared.spaces import PatientEntry, Spaces
from tests.bench.waiting_area import _rss_kib, _web_workers
from tests.support.stack import Stack, running_stack

WARM_UP = 20


async def run(stack: Stack, patients: int) -> None:
    spaces = Spaces(stack.redis())
    tokens = [
        spaces.create(1, PatientEntry("Waiting", f"Patient{i}", "+380 44 000 0000"))[1]
        for i in range(patients)
    ]
    [web] = _web_workers(stack)
    sockets: list[ClientConnection] = []

    async def open_one(token: str) -> None:
        socket = await connect(
            f"{stack.ws_url}/c/demo/space/ws",
            additional_headers={"Cookie": f"vc_space={token}"},
            origin=stack.url,  # type: ignore[arg-type]
            open_timeout=60,
        )
        await socket.recv()  # told it is waiting: the server is done setting it up
        sockets.append(socket)

    async def open_all(batch: list[str]) -> None:
        for start in range(0, len(batch), 50):
            await asyncio.gather(*(open_one(t) for t in batch[start : start + 50]))
        await asyncio.sleep(8)  # settled, a presence tick gone by

    await open_all(tokens[:WARM_UP])
    half = (patients - WARM_UP) // 2
    figures = []
    for batch in (tokens[WARM_UP : WARM_UP + half], tokens[WARM_UP + half :]):
        before = _rss_kib(web)
        await open_all(batch)
        figures.append((_rss_kib(web) - before) / len(batch))
    print(
        f"{len(sockets)} open patient sockets; web RSS per socket: "
        + ", then ".join(f"{kib:.1f} KiB" for kib in figures)
        + " (target ≤ 40 KiB)"
    )
    for socket in sockets:
        await socket.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=1000)
    options = parser.parse_args()
    gc.disable()  # the instrument must not pause
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    overrides = {"WEB_CONCURRENCY": "1", "VIDCLINIC_PATIENT_GRACE": "300"}
    with (
        tempfile.TemporaryDirectory() as root,
        running_stack(Path(root), beat=False, overrides=overrides) as stack,
    ):
        asyncio.run(run(stack, options.patients))


if __name__ == "__main__":
    main()
