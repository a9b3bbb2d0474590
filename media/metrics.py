"""A media node's metrics, on a port of its own when VIDCLINIC_MEDIA_METRICS_PORT is set.

Off by default: the node then opens no TCP port at all (signalling reaches it only through
Redis). The figures are read on the node's event loop at each scrape, so they never see a room
halfway through a change; the CPU the process uses comes from prometheus_client's process
collector (`process_cpu_seconds_total`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from media import instrumentation
from media.tap import packet_counts
from shared import metrics
from shared.config import Settings

if TYPE_CHECKING:
    from media.node import MediaNode

log = logging.getLogger(__name__)

#: Seconds a scrape waits for the event loop before it answers with the last figures.
LOOP_WAIT = 2.0


@dataclass(frozen=True)
class NodeFigures:
    """The node's figures at one instant."""

    calls: int
    participants: int
    forwarded_tracks: int
    packets_received: int
    packets_lost: int
    packets_sent: int


def read_figures(node: MediaNode) -> NodeFigures:
    """Count what the node hosts now; on the event loop."""
    participants = [p for room in node.rooms.values() for p in room.participants.values()]
    counters = instrumentation.COUNTERS
    received, lost, sent = counters.packets_received, counters.packets_lost, counters.packets_sent
    for participant in participants:
        open_received, open_lost, open_sent = packet_counts(participant.pc)
        received, lost, sent = received + open_received, lost + open_lost, sent + open_sent
    return NodeFigures(
        calls=len(node.rooms),
        participants=len(participants),
        forwarded_tracks=sum(
            len(publication.subscribers)
            for participant in participants
            for publication in participant.publications.values()
        ),
        packets_received=received,
        packets_lost=lost,
        packets_sent=sent,
    )


class MediaCollector(Collector):
    """The node's figures and counters, per scrape (from the metrics server's thread)."""

    def __init__(self, node: MediaNode, loop: asyncio.AbstractEventLoop) -> None:
        self._node = node
        self._loop = loop
        self._last = NodeFigures(0, 0, 0, 0, 0, 0)

    def _figures(self) -> NodeFigures:
        async def read() -> NodeFigures:
            return read_figures(self._node)

        try:
            figures = asyncio.run_coroutine_threadsafe(read(), self._loop).result(LOOP_WAIT)
        except TimeoutError:
            log.warning("event loop busy: metrics show the last figures")
            return self._last
        # Packet counters never go back: a connection's loss count can fall as late packets
        # arrive, and one closing is counted neither open nor retired for an instant.
        last = self._last
        self._last = NodeFigures(
            figures.calls,
            figures.participants,
            figures.forwarded_tracks,
            max(figures.packets_received, last.packets_received),
            max(figures.packets_lost, last.packets_lost),
            max(figures.packets_sent, last.packets_sent),
        )
        return self._last

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | InfoMetricFamily]:
        node, figures = self._node, self._figures()
        usage, counters = instrumentation.USAGE, instrumentation.COUNTERS
        yield InfoMetricFamily("vidclinic_media_node", "This media node", value={"node": node.id})
        for name, text, value in (
            ("calls", "Calls (rooms) the node hosts", figures.calls),
            ("participants", "Participants the node hosts", figures.participants),
            ("capacity", "Participants the node takes", node.settings.media_capacity),
            (
                "forwarded_tracks",
                "Tracks forwarded now (one per subscriber slot carried)",
                figures.forwarded_tracks,
            ),
        ):
            yield GaugeMetricFamily(f"vidclinic_media_{name}", text, value=value)
        for name, text, value in (
            ("frames_forwarded", "Encoded frames forwarded to subscribers", usage.frames_forwarded),
            (
                "frames_dropped",
                "Frames dropped for subscribers that fell behind",
                counters.frames_dropped,
            ),
            (
                "frames_decoded",
                "Frames decoded (a forwarding node keeps this at 0)",
                usage.frames_decoded,
            ),
            (
                "frames_encoded",
                "Frames encoded (a forwarding node keeps this at 0)",
                usage.frames_encoded,
            ),
            ("packets_received", "RTP packets received from publishers", figures.packets_received),
            (
                "packets_lost",
                "RTP packets from publishers that never arrived",
                figures.packets_lost,
            ),
            ("packets_sent", "RTP packets sent to subscribers", figures.packets_sent),
        ):
            yield CounterMetricFamily(f"vidclinic_media_{name}", text, value=value)
        keyframes = CounterMetricFamily(
            "vidclinic_media_keyframe_requests",
            "Keyframe requests: from subscribers to the node, from the node to publishers",
            labels=["direction"],
        )
        keyframes.add_metric(["from-subscribers"], counters.keyframe_requests_received)
        keyframes.add_metric(["to-publishers"], counters.keyframe_requests_sent)
        yield keyframes


def serve(settings: Settings, node: MediaNode, loop: asyncio.AbstractEventLoop) -> None:
    """Answer scrapes on VIDCLINIC_METRICS_ADDRESS:VIDCLINIC_MEDIA_METRICS_PORT."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    registry.register(MediaCollector(node, loop))
    metrics.serve(settings, settings.media_metrics_port, registry)
    log.info("metrics on %s:%d", settings.metrics_address, settings.media_metrics_port)
