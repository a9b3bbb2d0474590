"""Benchmark: what the media node spends to forward a packet, against what transcoding a frame
would cost; and how fast an ended consultation reaches the patient and the dashboards.

Run: .venv/bin/python -m tests.bench.forwarding [--participants 4] [--seconds 10]
Prints figures and ratios; never fails on the machine's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis
from aiortc.codecs import get_decoder, get_encoder
from aiortc.codecs.vpx import vp8_depayload
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from shared import keys
from shared.loadtest.media import MovingPicture
from tests.support.accounts import CLINICIAN
from tests.support.bots import Bot
from tests.support.http import Socket, enter, signed_in
from tests.support.stack import Stack, running_stack

NODE = "node-1"
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _forwarding(stack: Stack, participants: int, seconds: float) -> dict[str, float]:
    client = aioredis.Redis.from_url(stack.redis_server.url, decode_responses=True)
    bots = [Bot(client, NODE, "bench", f"p{i}", f"Bot {i}") for i in range(participants)]
    try:
        for bot in bots:
            await bot.join()
        await asyncio.sleep(3)  # connected, keyframes through
        pid = stack.processes["media"].popen.pid
        node = keys.media_node(NODE)
        # The node forwards packets as they arrive (it counted frames when it forwarded those).
        frames0 = int(await client.hget(node, "packets_forwarded") or 0)
        cpu0, wall0 = _cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(seconds)
        await asyncio.sleep(1.1)  # one more heartbeat carries the counters
        frames1 = int(await client.hget(node, "packets_forwarded") or 0)
        cpu1, wall1 = _cpu_seconds(pid), time.monotonic()
        decoded = int(await client.hget(node, "frames_decoded") or 0)
        encoded = int(await client.hget(node, "frames_encoded") or 0)
    finally:
        for bot in bots:
            await bot.leave()
        await client.aclose()
    frames = frames1 - frames0
    return {
        "frames": frames,
        "cpu_share": (cpu1 - cpu0) / (wall1 - wall0),
        "us_per_frame": (cpu1 - cpu0) / max(frames, 1) * 1e6,
        "decoded": decoded,
        "encoded": encoded,
    }


async def _transcoding_cost(frames: int = 150) -> float:
    """CPU µs to decode and re-encode one video frame: the work an SFU that transcodes does."""
    source, encoder = MovingPicture(), get_encoder(VP8)
    encoded = []
    for _ in range(frames):
        payloads, _ = encoder.encode(await source.recv())
        encoded.append(b"".join(vp8_depayload(p) for p in payloads))
    decoder, reencoder = get_decoder(VP8), get_encoder(VP8)
    start = time.process_time()
    for index, data in enumerate(encoded):
        for picture in decoder.decode(JitterFrame(data, index * 3000)):
            reencoder.encode(picture)
    return (time.process_time() - start) / frames * 1e6


def _end_call_latency(stack: Stack, rounds: int) -> dict[str, list[float]]:
    clinician = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    dashboard = Socket(stack, "/clinics/demo/waiting-area/ws", clinician)
    watcher = Socket(stack, "/clinics/demo/waiting-area/ws", clinician)
    results: dict[str, list[float]] = {"patient": [], "dashboard": [], "redis_roundtrip": []}
    client = stack.redis()
    try:
        dashboard.receive_type("waiting-area")
        watcher.receive_type("waiting-area")
        for i in range(rounds):
            patient, _ = enter(
                stack, {"first_name": "Bench", "last_name": f"Mark{i}", "phone": "+380 44 000 0000"}
            )
            patient_socket = Socket(stack, "/c/demo/space/ws", patient)
            arrived = dashboard.receive_type("space-changed")
            while arrived["event"] != "arrived":  # an update of the last round may trail
                arrived = dashboard.receive_type("space-changed")
            dashboard.send({"type": "join", "space": arrived["space"]["id"]})
            reply = dashboard.receive()
            while reply["type"] not in ("joined", "error"):
                reply = dashboard.receive()
            assert reply["type"] == "joined", reply
            url = reply["url"]
            call = Socket(stack, f"{url}/ws", clinician)
            call.receive_type("media-ready")
            patient_socket.receive_type("media-ready")
            start = time.perf_counter()
            call.send({"type": "end-call"})
            patient_socket.receive_type("ended")
            results["patient"].append(time.perf_counter() - start)
            while watcher.receive_type("space-left")["space"] != arrived["space"]["id"]:
                pass
            results["dashboard"].append(time.perf_counter() - start)
            start = time.perf_counter()
            client.ping()
            results["redis_roundtrip"].append(time.perf_counter() - start)
            call.close()
            patient_socket.close()
    finally:
        dashboard.close()
        watcher.close()
    return results


def _arrival_fan_out(stack: Stack, dashboards: int, rounds: int) -> list[float]:
    """Seconds from a patient's entry being accepted to the last of many dashboards seeing it."""
    clinician = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    sockets = [Socket(stack, "/clinics/demo/waiting-area/ws", clinician) for _ in range(dashboards)]
    spans = []
    try:
        for socket in sockets:
            socket.receive_type("waiting-area")
        for i in range(rounds):
            name = f"Fan Out{i}"
            start = time.perf_counter()
            enter(stack, {"first_name": "Fan", "last_name": f"Out{i}", "phone": "+380 44 000 0000"})
            for socket in sockets:
                while socket.receive_type("space-changed")["space"]["name"] != name:
                    pass
            spans.append(time.perf_counter() - start)
    finally:
        for socket in sockets:
            socket.close()
    return spans


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"p50 {statistics.median(ordered) * 1000:7.2f} ms  p95 {p95 * 1000:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--participants", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--dashboards", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vidclinic-bench-"))
    # One clinician holds every dashboard of the fan-out: past the usual cap on their sockets.
    overrides = {"VIDCLINIC_SOCKETS_PER_USER": str(args.dashboards + 2)}
    with running_stack(root, beat=False, overrides=overrides) as stack:
        forwarding = asyncio.run(_forwarding(stack, args.participants, args.seconds))
        transcoding_us = asyncio.run(_transcoding_cost())
        latency = _end_call_latency(stack, args.rounds)
        fan_out = _arrival_fan_out(stack, args.dashboards, max(3, args.rounds // 4))

    tracks = args.participants * (args.participants - 1) * 2
    print(f"forwarding: {args.participants} participants, {tracks} forwarded tracks")
    print(f"  packets forwarded           {forwarding['frames']:10.0f}")
    print(f"  media node CPU              {forwarding['cpu_share'] * 100:9.1f} % of one core")
    print(f"  CPU per forwarded packet    {forwarding['us_per_frame']:9.1f} µs (audio and video)")
    print(
        f"  frames decoded / encoded    {forwarding['decoded']:.0f} / {forwarding['encoded']:.0f}"
    )
    print(f"baseline: decode + re-encode one 320x240 VP8 frame  {transcoding_us:9.1f} µs")
    ratio = transcoding_us / forwarding["us_per_frame"]
    print(f"  ratio to forwarding one packet (audio or video)   {ratio:9.1f}x")
    print(f"end of consultation, {args.rounds} rounds (clinician presses End call):")
    print(f"  patient told it ended       {_ms(latency['patient'])}")
    print(f"  card gone from a dashboard  {_ms(latency['dashboard'])}")
    print(f"  baseline Redis PING         {_ms(latency['redis_roundtrip'])}")
    print(
        f"arrival on {args.dashboards} open dashboards (one web process, one pub/sub connection):"
    )
    print(f"  entry accepted -> last card {_ms(fan_out)}")


if __name__ == "__main__":
    main()
