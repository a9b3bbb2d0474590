"""Benchmark: a waiting area at scale — what waiting costs, and how fast events reach people.

Starts the whole system with two web processes, then on loopback: N patients waiting with
open sockets (10,000 by default), 50 open dashboards, patients arriving and leaving
continuously (10 a second each way) and messages to waiting patients, for a minute. Reports:

- arrival → the last of the dashboards, and message → patient: p50 / p99, from the moment the
  server made the space or recorded the message (the same clock) to the moment the client got it;
- the web processes' CPU while everyone simply waits, per 1,000 waiting patients;
- memory per open socket (the web processes' RSS before and after);
- Redis: CPU and commands per second while everyone waits;
- how the sockets spread over the two web processes;
- errors, including when every patient's socket drops at once and comes back (reconnecting as
  the page does: jittered, backing off; refused attempts are counted apart).

Run: .venv/bin/python -m tests.bench.waiting_area [--patients 10000] [--seconds 60]
Prints figures against the targets; never fails on the machine's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import requests
from websockets.asyncio.client import ClientConnection, connect

from shared.spaces import PatientEntry, Spaces
from tests.support.accounts import CLINICIAN
from tests.support.http import cookie_header, csrf_token, signed_in
from tests.support.stack import Stack, running_stack

#: Dashboards that send the messages (a socket may send two messages a second).
SENDERS = 10
#: Sockets opened before memory is measured (at most a tenth of the patients).
WARM_UP = 100
TARGETS = {"p99_ms": 50, "idle_per_1000": 2.0, "kib_per_socket": 40, "spread": 10}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _web_workers(stack: Stack) -> list[int]:
    """The gevent worker processes serving sockets: the leaves of the web process tree."""
    leaves, stack_of = [], [stack.processes["web"].popen.pid]
    while stack_of:
        pid = stack_of.pop()
        children = _children(pid)
        if children:
            stack_of += children
        else:
            leaves.append(pid)
    return leaves


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _tcp_sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else 0.0


def watch_dashboards(
    ws_url: str, origin: str, cookie: str, count: int, seconds: float, results: Any
) -> None:
    """In a process of its own (so the load generator's work never delays what it sees):
    `count` dashboards, and when each saw each arrival, by the time the server made it."""
    gc.disable()  # see main()

    async def watch() -> dict[str, tuple[float, list[float]]]:
        seen: dict[str, tuple[float, list[float]]] = {}
        sockets = []
        for _ in range(count):
            sockets.append(
                await connect(
                    f"{ws_url}/clinics/demo/waiting-area/ws",
                    additional_headers={"Cookie": cookie},
                    origin=origin,  # type: ignore[arg-type]
                    open_timeout=60,
                    max_size=2**26,
                )
            )
            await sockets[-1].recv()  # the snapshot: this one is in

        async def listen(socket: ClientConnection) -> None:
            try:
                async for raw in socket:
                    at = time.time()
                    if '"arrived"' not in raw:
                        continue
                    space = json.loads(raw)["space"]
                    if space["name"].startswith("New Arriving"):
                        seen.setdefault(space["name"], (space["entered_at"], []))[1].append(at)
            except Exception:
                return

        tasks = [asyncio.create_task(listen(socket)) for socket in sockets]
        results.put("ready")
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        return seen

    results.put(asyncio.run(watch()))


class Bench:
    def __init__(self, stack: Stack, patients: int, dashboards: int) -> None:
        self.stack = stack
        self.client = redis.Redis.from_url(stack.redis_server.url, decode_responses=True)
        self.spaces = Spaces(self.client)
        self.patient_count = patients
        self.dashboard_count = dashboards
        self.tokens: dict[str, str] = {}  # space id → token
        self.sockets: dict[str, ClientConnection] = {}
        self.dashboards: list[ClientConnection] = []
        self.arrivals: dict[str, float] = {}  # name → when sent
        self.messages_sent: dict[str, float] = {}
        self.message_latency: list[float] = []
        self.errors: list[str] = []
        self.refused: list[str] = []
        self.origin = stack.url
        self.staff_cookie = cookie_header(signed_in(stack, CLINICIAN.email, CLINICIAN.password))

    async def patient_socket(self, space_id: str, first_delay: float = 0.0) -> None:
        """Connect as the patient's page does (call.js): after a drop, again after a jittered
        0.25 to 0.75 s, then backing off to 8 s. A refused attempt is counted; a patient not back
        within a minute is an error."""
        retry, deadline = 0.5, time.monotonic() + 60
        await asyncio.sleep(first_delay)
        while True:
            try:
                socket = await connect(
                    f"{self.stack.ws_url}/c/demo/space/ws",
                    additional_headers={"Cookie": f"vc_space={self.tokens[space_id]}"},
                    origin=self.origin,  # type: ignore[arg-type]
                    open_timeout=30,
                )
                break
            except Exception as error:
                self.refused.append(repr(error))
                if time.monotonic() > deadline:
                    self.errors.append(f"patient not back: {error!r}")
                    return
                await asyncio.sleep(retry * (0.5 + random.random()))
                retry = min(retry * 2, 8)
        self.sockets[space_id] = socket
        asyncio.get_running_loop().create_task(self.listen_patient(space_id, socket))

    async def listen_patient(self, space_id: str, socket: ClientConnection) -> None:
        try:
            async for raw in socket:
                message = json.loads(raw)
                if message["type"] == "clinic-message":
                    if self.messages_sent.pop(message["text"], None) is not None:
                        # From the moment the server recorded the message (same clock).
                        self.message_latency.append(time.time() - message["at"])
                elif message["type"] == "error":
                    self.errors.append(f"patient error: {message['code']}")
        except Exception:
            pass

    async def dashboard(self) -> None:
        socket = await connect(
            f"{self.stack.ws_url}/clinics/demo/waiting-area/ws",
            additional_headers={"Cookie": self.staff_cookie},
            origin=self.origin,  # type: ignore[arg-type]
            open_timeout=60,
            max_size=2**26,
        )
        self.dashboards.append(socket)
        asyncio.get_running_loop().create_task(self.listen_dashboard(socket))

    async def listen_dashboard(self, socket: ClientConnection) -> None:
        try:
            async for raw in socket:
                if '"error"' in raw:
                    self.errors.append(f"dashboard error: {json.loads(raw).get('code')}")
        except Exception as error:
            self.errors.append(f"dashboard closed: {error!r}")

    def populate(self) -> None:
        for index in range(self.patient_count):
            space, token = self.spaces.create(
                1, PatientEntry("Waiting", f"Patient{index}", "+380 44 000 0000")
            )
            self.tokens[space.id] = token

    async def open_all(self, rate: float = 400, skip: int = 0) -> None:
        """Open the patients' sockets (after the first `skip`), `rate` a second."""
        ids = list(self.tokens)[skip:]
        for start in range(0, len(ids), int(rate / 10)):
            batch = ids[start : start + int(rate / 10)]
            await asyncio.gather(*(self.patient_socket(i) for i in batch))
            await asyncio.sleep(0.1)

    async def arrive(self, index: int, session: requests.Session, token: str) -> None:
        name = f"Arriving{index}"
        self.arrivals[f"New {name}"] = time.time()
        response = await asyncio.to_thread(
            session.post,
            f"{self.stack.url}/c/demo/enter",
            data={
                "csrf_token": token,
                "first_name": "New",
                "last_name": name,
                "phone": "+380 44 111 0000",
            },
            allow_redirects=False,
            timeout=30,
        )
        if response.status_code != 303:
            self.errors.append(f"entry {response.status_code}")

    async def leave(self) -> None:
        if not self.sockets:
            return
        space_id = random.choice(list(self.sockets))
        socket = self.sockets.pop(space_id)
        await socket.send(json.dumps({"v": 1, "type": "leave"}))

    async def message(self, index: int) -> None:
        if not self.sockets:
            return
        space_id = random.choice(list(self.sockets))
        text = f"message {index}"
        self.messages_sent[text] = time.time()
        await self.dashboards[index % len(self.dashboards)].send(
            json.dumps({"v": 1, "type": "send-message", "space": space_id, "text": text})
        )

    async def load(self, seconds: float, rate: float) -> None:
        session = requests.Session()
        token = csrf_token(session, f"{self.stack.url}/c/demo")
        interval = 1 / rate
        end = time.monotonic() + seconds
        index = 0
        while time.monotonic() < end:
            started = time.monotonic()
            index += 1
            asyncio.get_running_loop().create_task(self.arrive(index, session, token))
            await self.leave()
            await self.message(index)
            await asyncio.sleep(max(0, interval - (time.monotonic() - started)))
        await asyncio.sleep(3)

    async def drop_and_return(self) -> tuple[int, float]:
        """Every patient socket closes at once, then all come back; returns (back, seconds)."""
        ids = list(self.sockets)
        await asyncio.gather(*(self.sockets.pop(i).close() for i in ids), return_exceptions=True)
        started = time.monotonic()
        await asyncio.gather(*(self.patient_socket(i, 0.5 * (0.5 + random.random())) for i in ids))
        return len([i for i in ids if i in self.sockets]), time.monotonic() - started


async def run(stack: Stack, options: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(stack, options.patients, options.dashboards)
    workers = _web_workers(stack)
    figures: dict[str, Any] = {"web processes": len(workers)}
    rss_start = sum(_rss_kib(p) for p in workers)
    sockets_before = {p: _tcp_sockets(p) for p in workers}
    print(f"creating {options.patients} patient spaces…", flush=True)
    await asyncio.to_thread(bench.populate)
    print("opening their sockets…", flush=True)
    # What a socket costs is measured past the processes' first requests (imports, pools,
    # catalogues: tens of MiB that are no socket's), as tests.bench.socket_memory does.
    warm_up = min(WARM_UP, options.patients // 10)
    await asyncio.gather(*(bench.patient_socket(i) for i in list(bench.tokens)[:warm_up]))
    await asyncio.sleep(2)
    rss_warm = sum(_rss_kib(p) for p in workers)
    await bench.open_all(skip=warm_up)
    await asyncio.sleep(8)  # settled: every socket registered, a presence tick gone by
    rss_patients = sum(_rss_kib(p) for p in workers)
    figures["KiB per open socket"] = round(
        (rss_patients - rss_warm) / max(1, len(bench.sockets) - warm_up), 1
    )
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    watching = options.idle + options.seconds + 60
    watcher = context.Process(
        target=watch_dashboards,
        args=(
            stack.ws_url,
            stack.url,
            bench.staff_cookie,
            options.dashboards - SENDERS,
            watching,
            results,
        ),
    )
    watcher.start()
    await asyncio.to_thread(results.get)  # its dashboards are connecting
    for _ in range(SENDERS):  # the ones that send the messages, each within its socket's rate
        await bench.dashboard()
    await asyncio.sleep(8)  # settled: every socket registered, a presence tick gone by
    spread = {p: _tcp_sockets(p) - sockets_before[p] for p in workers}
    figures["sockets per web process"] = list(spread.values())
    total = sum(spread.values()) or 1
    figures["spread (largest share - even share, %)"] = round(
        (max(spread.values()) / total - 1 / len(spread)) * 100, 1
    )
    # The dashboards each hold the whole waiting area (every card) and hear every change.
    figures["MiB for the dashboards"] = round(
        (sum(_rss_kib(p) for p in workers) - rss_patients) / 1024, 1
    )
    figures["MiB in all, from the start"] = round(
        (sum(_rss_kib(p) for p in workers) - rss_start) / 1024, 1
    )

    info0, cpu0 = bench.client.info("stats"), bench.client.info("cpu")
    web0 = {p: _cpu_seconds(p) for p in workers}
    wall0 = time.monotonic()
    await asyncio.sleep(options.idle)
    wall = time.monotonic() - wall0
    info1, cpu1 = bench.client.info("stats"), bench.client.info("cpu")
    web_share = sum(_cpu_seconds(p) - web0[p] for p in workers) / wall * 100
    figures["web CPU while waiting (% of a core)"] = round(web_share, 2)
    figures["per 1,000 waiting (% of a core)"] = round(web_share / (len(bench.sockets) / 1000), 3)
    redis_cpu = sum(cpu1[k] - cpu0[k] for k in ("used_cpu_sys", "used_cpu_user")) / wall * 100
    figures["Redis CPU while waiting (% of a core)"] = round(redis_cpu, 2)
    figures["Redis commands/s while waiting"] = round(
        (info1["total_commands_processed"] - info0["total_commands_processed"]) / wall, 1
    )

    print(
        f"load: {options.rate}/s arrivals, departures and messages for {options.seconds} s…",
        flush=True,
    )
    web0 = {p: _cpu_seconds(p) for p in workers}
    own0, wall0 = time.process_time(), time.monotonic()
    await bench.load(options.seconds, options.rate)
    wall = time.monotonic() - wall0
    figures["during the load: web CPU (% of a core, each)"] = [
        round((_cpu_seconds(p) - web0[p]) / wall * 100, 1) for p in workers
    ]
    figures["during the load: this client's CPU (% of a core)"] = round(
        (time.process_time() - own0) / wall * 100, 1
    )
    seen_by = await asyncio.to_thread(results.get)
    watcher.join()
    arrivals = [
        (max(times) - created) * 1000
        for created, times in seen_by.values()
        if len(times) == options.dashboards - SENDERS
    ]
    figures["arrivals seen by every dashboard"] = f"{len(arrivals)} of {len(bench.arrivals)}"
    figures["dashboards"] = options.dashboards
    figures["arrival → last dashboard p50 / p99 (ms)"] = (
        round(statistics.median(arrivals), 1) if arrivals else None,
        round(_percentile(arrivals, 0.99), 1),
    )
    messages = [x * 1000 for x in bench.message_latency]
    figures["message → patient p50 / p99 (ms)"] = (
        round(statistics.median(messages), 1) if messages else None,
        round(_percentile(messages, 0.99), 1),
    )
    back, seconds = await bench.drop_and_return()
    figures["all sockets dropped and back"] = f"{back} in {seconds:.1f} s"
    figures["connection attempts refused (and retried)"] = len(bench.refused)
    if bench.refused:
        figures["first refusals"] = sorted(set(bench.refused))[:3]
    figures["errors"] = len(bench.errors)
    if bench.errors:
        figures["first errors"] = bench.errors[:5]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--dashboards", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=10, help="arrivals (and departures) a second")
    parser.add_argument("--idle", type=float, default=20, help="seconds measured while waiting")
    options = parser.parse_args()
    # The instrument must not pause: full collections over 10,000 client sockets stopped
    # this process for up to 2 s, latency that was not the server's. It runs for minutes.
    gc.disable()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    overrides = {
        "WEB_CONCURRENCY": "2",
        "VIDCLINIC_SOCKETS_PER_USER": str(options.dashboards + 10),
        "VIDCLINIC_ENTRY_RATE": "1000000",
        "VIDCLINIC_CLINIC_ENTRY_RATE": "1000000",
        "VIDCLINIC_PATIENT_GRACE": "300",
        "VIDCLINIC_HOUSEKEEPING_INTERVAL": "15",
    }
    with (
        tempfile.TemporaryDirectory() as root,
        running_stack(Path(root), overrides=overrides) as stack,
    ):
        figures = asyncio.run(run(stack, options))
    print("\nWaiting area at scale (targets in brackets):")
    for name, value in figures.items():
        print(f"  {name}: {value}")
    print(
        f"  targets: p99 ≤ {TARGETS['p99_ms']} ms; ≤ {TARGETS['idle_per_1000']} % of a core per"
        f" 1,000 waiting; ≤ {TARGETS['kib_per_socket']} KiB per socket; spread within"
        f" {TARGETS['spread']} %; 0 errors"
    )


if __name__ == "__main__":
    main()
