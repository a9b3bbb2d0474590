"""Benchmark: this media node against Janus and aiortc's MediaRelay, under the same load.

Load: 6-participant calls; each participant (an aiortc bot) publishes pre-encoded 640x360 VP8
at about 500 kbps plus Opus (tests/bench/sfu_media.py) and receives the five others: 60
forwarded tracks a call. Each call's six bots run in a process of their own
(tests/bench/sfu_call.py), pinned to the publishers' cores; the SFU, every thread of it, is
pinned to a core of its own. For each number of calls and each SFU, in turn, in one run:

- forwarded tracks per core: the subscriber tracks that received media in the window, divided
  by the share of one core the SFU process used meanwhile (its CPU seconds from /proc, every
  thread, user and system, over a measured window after a warm-up);
- publisher→subscriber latency p50/p99 per kind, per packet: the publisher appends its send
  time to every RTP payload (the payload is what a packet-level SFU forwards byte for byte; see
  sfu_media.py) and the subscriber reads it as its receiver takes the packet in, decoding
  nothing. It is end to end (both bots' aiortc stacks included), so it bounds from above what
  the SFU itself adds;
- loss: RTP sequence numbers never received by a subscriber (after NACK repair) among those
  its stream spanned; and the video frames a second each subscriber track got (the clip sends
  30), which shows what a transcoder skips without a gap in its own numbering.

The SFUs: (1) this media node, started as the tests start it (tests.support.stack, on
loopback); (2) Janus 1.x from Debian's `janus` package, videoroom plugin, HTTP transport,
started here from a configuration folder of its own in a network namespace made for it, with
its bots (sfu_janus.py); (3) aiortc's MediaRelay, decoding each publisher once and encoding per
subscriber, in a small server of the benchmark's (sfu_relay.py).

Calls: 1, 2 and 3 by default. The publishers are the limit on a 2-core machine: one call's six
bots take about a quarter of their core (receiving 60 tracks through aiortc), so three calls
nearly fill it, well before the SFU's core is full (the figures say how full it was); with more
cores give the bots more (`--publisher-cores`) and ask for more calls.

Run: .venv/bin/python -m tests.bench.sfu [--calls 1,2,3] [--seconds 25] [--warm-up 8]
Needs root (network namespace, socket buffers). Prints figures, ratios and whether the targets
of issue 10 are met; never fails on the machine's speed. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from shared.loadtest.media import FRAME_RATE
from shared.protocol import SLOT_COUNT
from tests.bench.forwarding import _cpu_seconds
from tests.bench.sfu_janus import HTTP_PORT, running_janus, why_not_runnable
from tests.bench.sfu_media import save_clips
from tests.support.netns import Host, Network
from tests.support.stack import running_stack

PARTICIPANTS = SLOT_COUNT + 1
TRACKS_PER_CALL = PARTICIPANTS * (PARTICIPANTS - 1) * 2
#: Audio packets a second the Opus clip sends (20 ms frames).
AUDIO_RATE = 50
RELAY_NODE = "relay"
SFUS = ("node", "janus", "relay")
TITLES = {"node": "this node", "janus": "Janus", "relay": "MediaRelay"}
#: A share of the publishers' core past which their own queueing shows in the figures.
SATURATED = 0.9
#: Seconds a call's bots have to join and get media on every track.
JOIN_TIMEOUT = 120.0


@dataclass
class Measure:
    """One SFU under one load, over the measured window."""

    sfu: str
    calls: int
    seconds: float
    cpu_share: float
    publishers_cpu_share: float
    stats: dict[str, dict[str, Any]]
    ready: str = ""

    @property
    def tracks(self) -> int:
        return int(self.stats["audio"]["tracks"] + self.stats["video"]["tracks"])

    @property
    def tracks_per_core(self) -> float:
        return self.tracks / self.cpu_share if self.cpu_share else float("inf")

    def loss(self, kind: str) -> float:
        stats = self.stats[kind]
        return 1 - stats["received"] / stats["expected"] if stats["expected"] else 1.0

    def per_track_rate(self, kind: str) -> float:
        """Video frames, or audio packets, a second each receiving track got."""
        stats = self.stats[kind]
        count = stats["frames"] if kind == "video" else stats["received"]
        return float(count / stats["tracks"] / self.seconds) if stats["tracks"] else 0.0

    def full_rate_tracks_per_core(self) -> float:
        """Tracks per core counting a track at the share of the clip's rate it got."""
        audio = self.stats["audio"]["tracks"] * min(1.0, self.per_track_rate("audio") / AUDIO_RATE)
        video = self.stats["video"]["tracks"] * min(1.0, self.per_track_rate("video") / FRAME_RATE)
        return (audio + video) / self.cpu_share if self.cpu_share else float("inf")

    def stamped(self) -> float:
        """The share of received packets that gave a latency sample (retransmissions do not)."""
        samples = sum(len(self.stats[k]["latencies_us"]) for k in ("audio", "video"))
        received = sum(self.stats[k]["received"] for k in ("audio", "video"))
        return samples / received if received else 0.0

    def latency_ms(self, kind: str, share: float) -> float | None:
        values = self.stats[kind]["latencies_us"]
        if not values:
            return None
        ordered = sorted(values)
        return float(ordered[min(len(ordered) - 1, int(share * len(ordered)))] / 1000)


@dataclass
class Target:
    """Where an SFU's participants connect, and what runs them there."""

    sfu: str
    pid: int
    address: str
    wrapper: list[str]
    extra: list[str]


@dataclass
class CallProcess:
    """One call's bots (tests/bench/sfu_call.py) and the pipe to them."""

    popen: subprocess.Popen[str]
    log: Path

    def say(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def reply(self, timeout: float) -> dict[str, Any]:
        """The next JSON line the bots print; raises if they print none in time."""
        stdout: IO[str] | None = self.popen.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([stdout], [], [], left)[0]:
                break
            line = stdout.readline()
            if not line:
                raise RuntimeError(f"bots exited ({self.popen.wait()}): see {self.log}")
            with contextlib.suppress(json.JSONDecodeError):
                message: dict[str, Any] = json.loads(line)
                if "error" in message:
                    raise RuntimeError(f"bots failed: {message['error']} (see {self.log})")
                return message
        raise TimeoutError(f"no word from the bots in {timeout:.0f} s: see {self.log}")

    def finish(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self.say("stop")
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def _pin_all_threads(pid: int, core: int) -> None:
    """Pin every thread a process has now; threads it makes later inherit from their maker."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), {core})


def _start_call(
    target: Target, index: int, calls: int, clips: Path, cores: str, root: Path
) -> CallProcess:
    log = root / f"{target.sfu}-{calls}calls-{index}.log"
    command = [
        *target.wrapper,
        sys.executable,
        "-m",
        "tests.bench.sfu_call",
        "--sfu",
        target.sfu,
        "--clips",
        str(clips),
        "--address",
        target.address,
        "--cores",
        cores,
        "--call",
        f"bench-{target.sfu}-{calls}-{index}-{os.getpid()}",
        "--room",
        str(1000 + calls * 100 + index),
        *target.extra,
    ]
    popen = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log.open("a"),
        text=True,
        start_new_session=True,
    )
    return CallProcess(popen, log)


def _measure(
    target: Target, calls: int, options: argparse.Namespace, clips: Path, root: Path
) -> Measure:
    processes = [
        _start_call(target, i, calls, clips, options.publisher_cores, root) for i in range(calls)
    ]
    try:
        ready = [p.reply(JOIN_TIMEOUT) for p in processes]
        time.sleep(options.warm_up)
        cpu0, wall0 = _cpu_seconds(target.pid), time.monotonic()
        bots0 = sum(_cpu_seconds(p.popen.pid) for p in processes)
        for process in processes:
            process.say("start")
        time.sleep(options.seconds)
        for process in processes:
            process.say("stop")
        cpu1, wall1 = _cpu_seconds(target.pid), time.monotonic()
        bots1 = sum(_cpu_seconds(p.popen.pid) for p in processes)
        replies = [p.reply(60)["stats"] for p in processes]
    finally:
        for process in processes:
            process.finish()
    stats: dict[str, dict[str, Any]] = {}
    for kind in ("audio", "video"):
        parts = [r[kind] for r in replies]
        stats[kind] = {
            key: [v for part in parts for v in part[key]]
            if key == "latencies_us"
            else sum(part[key] for part in parts)
            for key in parts[0]
        }
    elapsed = wall1 - wall0
    got = sum(r["ready"] for r in ready)
    return Measure(
        sfu=target.sfu,
        calls=calls,
        seconds=elapsed,
        cpu_share=(cpu1 - cpu0) / elapsed,
        publishers_cpu_share=(bots1 - bots0) / elapsed,
        stats=stats,
        ready="" if got == calls * TRACKS_PER_CALL else f"{got}/{calls * TRACKS_PER_CALL}",
    )


@contextmanager
def _relay(redis_url: str, core: int, root: Path) -> Iterator[int]:
    """The MediaRelay server, on `core`, until the block ends; yields its pid."""
    log = root / "relay.log"
    popen = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.bench.sfu_relay"),
            *("--redis", redis_url, "--node", RELAY_NODE, "--core", str(core)),
        ],
        stdout=subprocess.PIPE,
        stderr=log.open("a"),
        text=True,
        start_new_session=True,
    )
    try:
        assert popen.stdout is not None
        if popen.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the MediaRelay server did not start: see {log}")
        yield popen.pid
    finally:
        popen.terminate()
        try:
            popen.wait(15)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


@contextmanager
def _network() -> Iterator[Host]:
    network = Network().open()
    try:
        yield network.host("janus")
    finally:
        network.close()


def _ms(value: float | None) -> str:
    return "     n/a" if value is None else f"{value:8.2f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not a or not b:
        return "n/a"
    return f"{a / b:.2f}x" if a / b >= 0.1 else f"1/{b / a:.0f}"


def _report(measures: list[Measure], janus_missing: str | None) -> None:
    print(
        "\nSFU          calls tracks  SFU CPU  tracks/core  full-rate  video fps  audio pkt/s"
        "  loss a/v (%)   audio p50/p99 (ms)   video p50/p99 (ms)  stamped  publishers' CPU"
    )
    for m in measures:
        note = f"  (media on {m.ready} tracks at start)" if m.ready else ""
        if m.publishers_cpu_share > SATURATED:
            note += "  (publishers' core saturated: their queueing is in the latency)"
        print(
            f"{TITLES[m.sfu]:12s} {m.calls:5d} {m.tracks:6d} {m.cpu_share * 100:7.1f}%"
            f" {m.tracks_per_core:12.0f} {m.full_rate_tracks_per_core():10.0f}"
            f" {m.per_track_rate('video'):10.1f} {m.per_track_rate('audio'):12.1f}"
            f"  {m.loss('audio') * 100:5.2f}/{m.loss('video') * 100:5.2f}"
            f"   {_ms(m.latency_ms('audio', 0.5))} {_ms(m.latency_ms('audio', 0.99))}"
            f"   {_ms(m.latency_ms('video', 0.5))} {_ms(m.latency_ms('video', 0.99))}"
            f"  {m.stamped() * 100:6.1f}%   {m.publishers_cpu_share * 100:6.1f}%{note}"
        )
    if janus_missing:
        print(f"\nJanus not measured: {janus_missing}")
    print("\nRatios of this node (per number of calls):")
    for calls, node, by_sfu in _per_call_count(measures):
        for other in ("janus", "relay"):
            peer = by_sfu.get(other)
            if peer is None:
                continue
            full_rate = peer.full_rate_tracks_per_core()
            latency = "  ".join(
                f"{kind} p50 {_ratio(node.latency_ms(kind, 0.5), peer.latency_ms(kind, 0.5))}"
                f" p99 {_ratio(node.latency_ms(kind, 0.99), peer.latency_ms(kind, 0.99))}"
                for kind in ("audio", "video")
            )
            print(
                f"  {calls} call(s), against {TITLES[other]:10s}: tracks per core"
                f" {_ratio(node.tracks_per_core, peer.tracks_per_core)}"
                f" (full-rate {_ratio(node.full_rate_tracks_per_core(), full_rate)});"
                f" latency {latency}"
            )
    _targets(measures)


def _per_call_count(measures: list[Measure]) -> Iterator[tuple[int, Measure, dict[str, Measure]]]:
    """For each number of calls this node was measured at: the count, its measure, and every
    SFU's measure by name."""
    for calls in sorted({m.calls for m in measures}):
        by_sfu = {m.sfu: m for m in measures if m.calls == calls}
        node = by_sfu.get("node")
        if node is not None:
            yield calls, node, by_sfu


def _targets(measures: list[Measure]) -> None:
    """Issue 10's targets, per number of calls, each said met or not (never faked)."""
    print("\nTargets (issue 10):")
    for calls, node, by_sfu in _per_call_count(measures):
        janus, relay = by_sfu.get("janus"), by_sfu.get("relay")
        lines: list[tuple[str, bool | None]] = []
        lines.append(
            (
                "forwarded tracks per core >= Janus's",
                None if janus is None else node.tracks_per_core >= janus.tracks_per_core,
            )
        )
        p50s = [node.latency_ms(kind, 0.5) for kind in ("audio", "video")]
        lines.append(
            (
                "latency p50 <= 2 ms, audio and video (end to end: the node adds less)",
                None if None in p50s else all(p is not None and p <= 2 for p in p50s),
            )
        )
        p99: bool | None = None
        if janus is not None:
            pairs = [
                (node.latency_ms(k, 0.99), janus.latency_ms(k, 0.99)) for k in ("audio", "video")
            ]
            if all(a is not None and b is not None for a, b in pairs):
                p99 = all(a is not None and b is not None and a <= b for a, b in pairs)
        lines.append(("latency p99 no worse than Janus's, audio and video", p99))
        # A saturated MediaRelay delivers each track at a fraction of the clip's frame rate:
        # counted as whole tracks, its CPU per track would look cheaper than it is.
        lines.append(
            (
                "CPU per forwarded track at least 20x less than MediaRelay's (full-rate tracks)",
                None
                if relay is None
                else node.full_rate_tracks_per_core() >= 20 * relay.full_rate_tracks_per_core(),
            )
        )
        lines.append(
            (
                "  the same, counting MediaRelay's tracks whole whatever their frame rate",
                None if relay is None else node.tracks_per_core >= 20 * relay.tracks_per_core,
            )
        )
        for text, met in lines:
            verdict = "not measured" if met is None else ("met" if met else "NOT met")
            print(f"  {calls} call(s): {text}: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="1,2,3", help="numbers of 6-person calls, e.g. 1,2,3")
    parser.add_argument("--seconds", type=float, default=25.0, help="measured window")
    parser.add_argument("--warm-up", type=float, default=8.0, help="seconds before the window")
    parser.add_argument("--sfus", default=",".join(SFUS), help="which SFUs, e.g. node,relay")
    cores = sorted(os.sched_getaffinity(0))
    parser.add_argument("--sfu-core", type=int, default=cores[-1])
    parser.add_argument(
        "--publisher-cores",
        default=",".join(str(c) for c in cores[:-1] or cores),
        help="cores the bots run on (never the SFU's)",
    )
    parser.add_argument("--kbps", type=int, default=500, help="the video clip's bitrate")
    options = parser.parse_args()
    call_counts = [int(c) for c in options.calls.split(",")]
    sfus = [s for s in options.sfus.split(",") if s]
    if str(options.sfu_core) in options.publisher_cores.split(","):
        parser.error("the publishers must not share the SFU's core")

    root = Path(tempfile.mkdtemp(prefix="vidclinic-sfu-bench-"))
    audio, video = save_clips(root / "clips.pickle", options.kbps)
    print(
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M:%S} UTC, {os.cpu_count()} cores,"
        f" load average {os.getloadavg()[0]:.2f}; SFU on core {options.sfu_core}, publishers on"
        f" {options.publisher_cores}; {PARTICIPANTS}-person calls, {TRACKS_PER_CALL} forwarded"
        f" tracks each; video 640x360 VP8 {video.bitrate / 1000:.0f} kbps, Opus"
        f" {audio.bitrate / 1000:.0f} kbps; {options.seconds:.0f} s windows after"
        f" {options.warm_up:.0f} s; logs in {root}",
        flush=True,
    )
    janus_missing = why_not_runnable() if "janus" in sfus else None
    if os.geteuid() != 0 and "janus" in sfus:
        janus_missing = "a network namespace needs root"
    measures: list[Measure] = []
    # The relay and Janus stop before the stack (the relay reads its inbox from the stack's Redis).
    with running_stack(root, beat=False) as system, ExitStack() as stack:
        node_pid = system.processes["media"].popen.pid
        _pin_all_threads(node_pid, options.sfu_core)
        extra = ["--redis", system.redis_server.url, "--node", "node-1"]
        targets = {"node": Target("node", node_pid, "127.0.0.1", [], extra)}
        if "relay" in sfus:
            pid = stack.enter_context(_relay(system.redis_server.url, options.sfu_core, root))
            extra = ["--redis", system.redis_server.url, "--node", RELAY_NODE]
            targets["relay"] = Target("relay", pid, "127.0.0.1", [], extra)
        if "janus" in sfus and janus_missing is None:
            try:
                host = stack.enter_context(_network())
                janus = stack.enter_context(running_janus(root / "janus", host, options.sfu_core))
                url = f"http://{host.address}:{HTTP_PORT}/janus"
                targets["janus"] = Target(
                    "janus", janus.pid, host.address, host.wrapper, ["--janus", url]
                )
            except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
                janus_missing = f"it did not start: {exc}"
        for calls in call_counts:
            for sfu in sfus:
                if sfu not in targets:
                    continue
                try:
                    measure = _measure(targets[sfu], calls, options, root / "clips.pickle", root)
                except (RuntimeError, TimeoutError) as exc:
                    print(f"{TITLES[sfu]}, {calls} call(s): not measured: {exc}", flush=True)
                    if sfu == "janus":
                        janus_missing = str(exc)
                    continue
                measures.append(measure)
                print(
                    f"{TITLES[sfu]}, {calls} call(s): {measure.cpu_share * 100:.1f}% of a core,"
                    f" {measure.tracks} tracks, video p50"
                    f" {_ms(measure.latency_ms('video', 0.5)).strip()} ms",
                    flush=True,
                )
    _report(measures, janus_missing)
    print(
        "\nLatency is per packet, publisher's send to subscriber's receiver, both aiortc stacks"
        " included. Full-rate counts a track at the share of the clip's 30 fps (50 audio"
        " packets/s) it got. One run: rerun for the spread."
    )


if __name__ == "__main__":
    main()
