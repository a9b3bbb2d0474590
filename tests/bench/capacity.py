"""Benchmark: what each kind of process spends per unit of load, for docs/capacity.md.

Starts the whole system (one web process, a worker, beat, a media node, Redis), then runs
`vidclinic loadtest` against it twice, reading every process's CPU time from /proc (and
Redis's from INFO) before and after each phase:

1. **waiting**: N patients enter at R a second and wait with M dashboards open. Reported per
   entry (the ramp) and per 1,000 patients waiting for a second (the hold);
2. **calls**: K consultations of P participants with synthetic media. Reported per call
   participant-second and per forwarded track-second (a track a participant receives from
   another: P-1 audio and P-1 video each).

CPU-seconds per unit hold on a loaded machine far better than throughput does (a process that
waits for the CPU spends no CPU meanwhile); divide a core's second by them for the units one
core carries. The load tester's own CPU is reported too: it says how many load machines a
larger test needs.

Every figure has each process's own cost with nothing to do (measured first, for --idle
seconds) taken away.

Run: .venv/bin/python -m tests.bench.capacity [--patients 500] [--rate 10] [--calls 4]
[--participants 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tests.bench.waiting_area import _children, _cpu_seconds, _web_workers
from tests.support.accounts import CLINICIAN
from tests.support.stack import Stack, running_stack


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo += _children(current)
    return pids


def _tree_cpu(pid: int) -> float:
    total = 0.0
    for each in _tree(pid):
        with contextlib.suppress(OSError):  # ended meanwhile
            total += _cpu_seconds(each)
    return total


@dataclass
class Sample:
    at: float
    cpu: dict[str, float]


class Meter:
    """CPU seconds of each process kind, read every half second while a phase runs."""

    def __init__(self, stack: Stack, tester_pid: int) -> None:
        self.stack = stack
        self.tester_pid = tester_pid
        self.client = redis.Redis.from_url(stack.redis_server.url)
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def read(self) -> Sample:
        processes = self.stack.processes
        info = self.client.info("cpu")
        cpu = {
            "web": sum(_cpu_seconds(p) for p in _web_workers(self.stack)),
            "worker": _tree_cpu(processes["worker"].popen.pid),
            "beat": _tree_cpu(processes["beat"].popen.pid),
            "media": _tree_cpu(processes["media"].popen.pid),
            "redis": float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
            "load tester": _tree_cpu(self.tester_pid),
        }
        return Sample(time.monotonic(), cpu)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            with contextlib.suppress(OSError, redis.RedisError):
                self.samples.append(self.read())

    def __enter__(self) -> Meter:
        self.samples.append(self.read())
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> tuple[float, dict[str, float]]:
        """Seconds and CPU seconds per kind from the first sample after `start` to the last
        before `end`."""
        inside = [s for s in self.samples if start <= s.at <= end]
        if len(inside) < 2:
            return 0.0, {}
        first, last = inside[0], inside[-1]
        return last.at - first.at, {k: last.cpu[k] - first.cpu[k] for k in first.cpu}


def loadtest(stack: Stack, report: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VIDCLINIC_LOADTEST_PASSWORD": CLINICIAN.password}
    command = [sys.executable, "-m", "shared.cli", "loadtest", stack.url, "--json", str(report)]
    command += ["--staff-email", CLINICIAN.email, *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def phase(
    stack: Stack, report_path: Path, ramp: float, duration: float, args: list[str]
) -> tuple[dict[str, Any], tuple[float, dict[str, float]], tuple[float, dict[str, float]]]:
    """Run one load test; the report, and (seconds, CPU) of its ramp and of its hold."""
    started = time.monotonic()
    tester = loadtest(stack, report_path, "--duration", str(duration), *args)
    with Meter(stack, tester.pid) as meter:
        _out, err = tester.communicate(timeout=duration + 180)
    if tester.returncode not in (0, 1):
        raise RuntimeError(err.decode(errors="replace"))
    report = json.loads(report_path.read_text())
    # The ramp: from the first entry (after signing in and opening the dashboards, ~2 s) to
    # its end; the hold: from a few seconds after it (calls connected) until the leaving.
    ramp_window = meter.between(started + 2, started + 2 + ramp)
    hold_window = meter.between(started + ramp + 8, started + duration - 1)
    return report, ramp_window, hold_window


def per(
    cpu: dict[str, float], units: float, seconds: float, baseline: dict[str, float]
) -> dict[str, float]:
    """CPU µs per unit, after taking away what each process spends with no load at all."""
    if not units:
        return {}
    return {k: round((v - baseline.get(k, 0.0) * seconds) / units * 1e6, 1) for k, v in cpu.items()}


def idle_rates(stack: Stack, seconds: float) -> dict[str, float]:
    """CPU seconds per second each process spends with nobody there (beat's ticks, the
    worker's polling, the node's heartbeat): taken off every figure below."""
    meter = Meter(stack, os.getpid())
    first = meter.read()
    time.sleep(seconds)
    last = meter.read()
    wall = last.at - first.at
    rates = {k: (last.cpu[k] - first.cpu[k]) / wall for k in first.cpu}
    rates["load tester"] = 0.0  # not running yet
    return rates


def problems(report: dict[str, Any]) -> dict[str, int]:
    return {**report["errors"], **report["patients"]["refused"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--dashboards", type=int, default=5)
    parser.add_argument("--rate", type=float, default=10, help="entries a second")
    parser.add_argument("--hold", type=float, default=30, help="seconds measured while waiting")
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--participants", type=int, default=2)
    parser.add_argument("--call-seconds", type=float, default=40)
    parser.add_argument("--idle", type=float, default=15, help="seconds measured with no load")
    options = parser.parse_args()
    overrides = {
        "VIDCLINIC_SOCKETS_PER_USER": str(options.dashboards + options.calls + 2),
        "VIDCLINIC_ENTRY_RATE": "1000000",
        "VIDCLINIC_CLINIC_ENTRY_RATE": "1000000",
        "VIDCLINIC_PATIENT_GRACE": "300",
        "VIDCLINIC_HOUSEKEEPING_INTERVAL": "15",
    }
    figures: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as root,
        running_stack(Path(root), overrides=overrides) as stack,
    ):
        time.sleep(5)  # the stack settles (the worker's and beat's first rounds)
        baseline = idle_rates(stack, options.idle)
        figures["with no load (% of a core)"] = {k: round(v * 100, 2) for k, v in baseline.items()}
        ramp = options.patients / options.rate
        report, (ramp_s, ramp_cpu), (hold_s, hold_cpu) = phase(
            stack,
            Path(root) / "waiting.json",
            ramp,
            ramp + options.hold + 10,
            [
                "--patients", str(options.patients),
                "--dashboards", str(options.dashboards),
                "--rate", str(options.rate),
                "--sockets-per-user", overrides["VIDCLINIC_SOCKETS_PER_USER"],
            ],
        )  # fmt: skip
        entries = ramp_s * options.rate
        figures["waiting: entered / problems"] = (report["patients"]["entered"], problems(report))
        figures["waiting: entry ms p50 / p99"] = (report["entry_ms"].get("p50"),
                                                  report["entry_ms"].get("p99"))  # fmt: skip
        figures["waiting: arrival → dashboard ms p50 / p99"] = (
            report["arrival_to_dashboard_ms"].get("p50"),
            report["arrival_to_dashboard_ms"].get("p99"),
        )
        waiting_seconds = options.patients * hold_s
        waiting = per(hold_cpu, waiting_seconds, hold_s, baseline)
        figures["CPU µs per waiting patient-second (hold)"] = waiting
        # During the ramp, on average half the patients already wait: their idle cost is
        # taken out of the entries'.
        idle = {k: v / 1e6 * (entries / 2) * ramp_s for k, v in waiting.items()}
        figures["CPU µs per entry (ramp, less the idle cost of those waiting)"] = per(
            {k: v - idle.get(k, 0.0) for k, v in ramp_cpu.items()}, entries, ramp_s, baseline
        )
        people = options.calls * options.participants
        tracks = people * (options.participants - 1) * 2
        ramp = people / 5
        report, _, (call_s, call_cpu) = phase(
            stack,
            Path(root) / "calls.json",
            ramp,
            ramp + options.call_seconds + 10,
            [
                "--patients", "0",
                "--calls", str(options.calls),
                "--participants", str(options.participants),
                "--rate", "5",
                "--sockets-per-user", overrides["VIDCLINIC_SOCKETS_PER_USER"],
            ],
        )  # fmt: skip
        figures["calls: started / receiving from all / problems"] = (
            report["calls"]["started"],
            report["calls"]["receiving_from_all_others"],
            problems(report),
        )
        figures["calls: setup ms p50 / max"] = (
            report["call_setup_video_ms"].get("p50"),
            report["call_setup_video_ms"].get("max"),
        )
        figures["calls: media per participant kbit/s p50"] = report["media_per_participant"][
            "kbit_per_second"
        ].get("p50")
        figures["CPU µs per call participant-second"] = per(
            call_cpu, people * call_s, call_s, baseline
        )
        figures["CPU µs per forwarded track-second"] = per(
            call_cpu, tracks * call_s, call_s, baseline
        )
        # What the web process logged as errors, if anything went wrong: the figures above
        # count only what worked.
        lines = (Path(root) / "web.log").read_text(errors="replace").splitlines()
        errors = [line for line in lines if " ERROR " in line or "Traceback" in line]
    if errors:
        print("\nThe web process's errors:\n" + "\n".join(e[:2000] for e in errors[:5]))
    print("\nCapacity figures (CPU microseconds per unit; 1,000,000 = one core for a second):")
    for name, value in figures.items():
        print(f"  {name}: {value}")


if __name__ == "__main__":
    main()
