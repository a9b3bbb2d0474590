"""What the SFU benchmark's publishers send, and how a subscriber tells when it was sent.

Media: a 640x360 VP8 clip at about 500 kbps and an Opus tone, each encoded once (by the
benchmark's parent process) and replayed by every publisher as pre-encoded packets, so the
publishers' core spends nothing on encoding and every SFU gets the same bytes.

Send time: a 12-byte trailer (`MAGIC` and CLOCK_MONOTONIC in nanoseconds) appended to the RTP
payload of every media packet as the publisher's transport sends it. The payload is what every
packet-level SFU forwards byte for byte: this node's SlotForwarder builds each outgoing packet
around the publisher's payload but keeps only the audio-level header extension (it sets its own
mid and abs-send-time), so a header extension of ours would not reach the subscriber; Janus's
videoroom rewrites SSRC, sequence numbers, timestamps and extension ids, never the payload.
CLOCK_MONOTONIC is one clock for every process on the machine, network namespaces included.
Subscribers read the trailer from the packet as their receiver takes it in (no jitter buffer,
no decoding). A transcoding relay keeps nothing of a payload: the benchmark's MediaRelay server
moves the stamp across itself (tests/bench/sfu_relay.py).
"""

from __future__ import annotations

import pickle
import struct
import time
from pathlib import Path

from aiortc import RTCPeerConnection
from aiortc.rtp import is_rtcp

from shared.loadtest.media import Clip, audio_clip, video_clip

MAGIC = b"VCts"
TRAILER = struct.Struct(">4sQ")
WIDTH, HEIGHT = 640, 360
#: Seconds of the video loop: one keyframe each (and one whenever a subscriber asks).
LOOP_SECONDS = 5.0


def trailer(sent_ns: int | None = None) -> bytes:
    """The bytes appended to a payload sent now (or at `sent_ns`)."""
    return TRAILER.pack(MAGIC, time.monotonic_ns() if sent_ns is None else sent_ns)


def sent_at(payload: bytes) -> int | None:
    """The send time a payload carries (monotonic ns), or None (a retransmission, padding)."""
    if len(payload) < TRAILER.size or payload[-TRAILER.size : -8] != MAGIC:
        return None
    return int.from_bytes(payload[-8:], "big")


def stamp_sent_media(pc: RTCPeerConnection, senders: int = 2) -> None:
    """Append the send time to every packet of the first `senders` senders' media SSRCs.

    Done where the transport takes the serialized packet (after packetization, before SRTP), so
    each packet of a keyframe burst carries the moment it left. Retransmissions (their own RTX
    SSRC) carry none: a repaired packet counts as received but gives no latency sample.
    """
    own = [t.sender for t in pc.getTransceivers()[:senders]]
    ssrcs = {sender._ssrc.to_bytes(4, "big") for sender in own}
    transport = own[0].transport  # bundled: one for all
    send = transport._send_rtp

    async def stamped(data: bytes) -> None:
        if not is_rtcp(data) and data[8:12] in ssrcs:
            data += trailer()
        await send(data)

    transport._send_rtp = stamped  # type: ignore[method-assign]


def save_clips(path: Path, kbps: int = 500) -> tuple[Clip, Clip]:
    """Encode the clips once and keep them at `path` for the publishers' processes."""
    clips = (audio_clip(), video_clip(kbps, LOOP_SECONDS, WIDTH, HEIGHT))
    path.write_bytes(pickle.dumps(clips))
    return clips


def load_clips(path: Path) -> tuple[Clip, Clip]:
    """The (audio, video) clips `save_clips` kept (a file this benchmark wrote itself)."""
    clips: tuple[Clip, Clip] = pickle.loads(path.read_bytes())
    return clips
