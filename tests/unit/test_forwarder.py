"""Slot forwarders rewrite each publisher's packets into one continuous stream per slot: video
starts at a keyframe, sequence numbers and timestamps run on across publishers, sender reports
keep the publisher's clock, and what subscribers can take caps the publisher."""

from __future__ import annotations

import asyncio

from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtpPacket,
    pack_remb_fci,
)

from media.forwarder import (
    CLOCK_RATE,
    FRAME_STEP,
    KEYFRAME_REQUEST_INTERVAL,
    MAX_VIDEO_BITRATE,
    MIN_VIDEO_BITRATE,
    Publication,
    SlotForwarder,
    starts_keyframe,
)
from tests.support.aio import run

#: VP8 payloads: a payload descriptor (S bit set, partition 0), then the frame tag's first byte.
KEY_START = b"\x10\x50\x01\x00\x9d\x01\x2a"  # P bit clear: a keyframe starts here
DELTA_START = b"\x10\x51\x01\x00"  # P bit set: an interframe starts here
MIDDLE = b"\x00\xaa\xbb"  # no S bit: the middle of a frame
#: With the extension byte (X), a 15-bit picture id (I, M) and TL0PICIDX (L), then a keyframe.
KEY_START_EXTENDED = b"\x90\xc0\x81\x23\x07\x50\x01"


class FakeSender:
    """Records what a slot sends."""

    ssrc = 1234

    def __init__(self, _forwarder: SlotForwarder) -> None:
        self.sent: list[tuple[RtpPacket, int]] = []

    def ready(self) -> bool:
        return True

    async def send(self, packet: RtpPacket, ntp_time: int) -> None:
        self.sent.append((packet, ntp_time))


def _sent(forwarder: SlotForwarder) -> list[tuple[RtpPacket, int]]:
    assert isinstance(forwarder.sender, FakeSender)
    return forwarder.sender.sent


def _publication(kind: str, requests: list[int], ssrc: int = 555) -> Publication:
    def request_pli() -> bool:
        requests.append(1)
        return True

    return Publication(kind, ssrc, request_pli)


def _packet(seq: int, ts: int, payload: bytes, ssrc: int = 555) -> RtpPacket:
    return RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload)


def test_vp8_keyframe_starts_are_told_apart() -> None:
    assert starts_keyframe("video", KEY_START)
    assert starts_keyframe("video", KEY_START_EXTENDED)
    assert not starts_keyframe("video", DELTA_START)
    assert not starts_keyframe("video", MIDDLE)
    assert not starts_keyframe("video", b"\x11\x50")  # partition 1, not the frame's start
    assert not starts_keyframe("video", b"")
    assert starts_keyframe("audio", MIDDLE)


def test_a_new_subscriber_starts_at_a_keyframe_and_asks_for_one() -> None:
    async def scenario() -> None:
        requests: list[int] = []
        publication = _publication("video", requests)
        slot = SlotForwarder("video", FakeSender)
        slot.attach(publication)
        assert requests == [1]
        await publication.on_packet(_packet(100, 3000, DELTA_START))
        await publication.on_packet(_packet(101, 3000, MIDDLE))
        assert _sent(slot) == []
        for seq, payload in ((102, KEY_START), (103, MIDDLE), (104, DELTA_START)):
            await publication.on_packet(_packet(seq, 6000 + (seq - 102) * 3000, payload))
        assert [p.sequence_number for p, _ in _sent(slot)] == [102, 103, 104]
        assert [p.payload for p, _ in _sent(slot)] == [KEY_START, MIDDLE, DELTA_START]

    run(scenario())


def test_another_publisher_in_the_slot_continues_the_stream() -> None:
    """Sequence numbers go on one by one and timestamps at least one frame later (by as long as
    the slot was quiet), whatever numbers the new publisher uses, and its video starts at its
    keyframe."""

    async def scenario() -> None:
        first, second = _publication("video", [], 1), _publication("video", [], 2)
        slot = SlotForwarder("video", FakeSender)
        slot.attach(first)
        await first.on_packet(_packet(65534, 900_000, KEY_START, ssrc=1))
        await first.on_packet(_packet(65535, 900_000, MIDDLE, ssrc=1))
        slot.attach(second)
        await first.on_packet(_packet(0, 903_000, DELTA_START, ssrc=1))  # no longer carried
        await second.on_packet(_packet(5000, 10, DELTA_START, ssrc=2))  # not a keyframe yet
        await second.on_packet(_packet(5001, 3010, KEY_START, ssrc=2))
        await second.on_packet(_packet(5002, 6010, DELTA_START, ssrc=2))
        sent = [(p.sequence_number, p.timestamp) for p, _ in _sent(slot)]
        assert sent[:2] == [(65534, 900_000), (65535, 900_000)]
        assert [seq for seq, _ in sent[2:]] == [0, 1]
        step = sent[2][1] - 900_000
        assert FRAME_STEP["video"] <= step < FRAME_STEP["video"] + 0.5 * CLOCK_RATE["video"]
        assert sent[3][1] - sent[2][1] == 3000

    run(scenario())


def test_a_slot_quiet_for_a_while_resumes_with_its_clock_advanced_as_much() -> None:
    """A publisher that reloads its page comes back in the same slot seconds later: the slot's
    timestamps jump as far as the wall clock did, so the browser shows the picture at once."""

    async def scenario() -> None:
        before, after = _publication("video", [], 1), _publication("video", [], 2)
        slot = SlotForwarder("video", FakeSender)
        slot.attach(before)
        await before.on_packet(_packet(10, 90_000, KEY_START, ssrc=1))
        slot.attach(after)
        await asyncio.sleep(0.5)
        await after.on_packet(_packet(7, 5, KEY_START, ssrc=2))
        (first, _), (resumed, _) = _sent(slot)
        gap = resumed.timestamp - first.timestamp
        assert 0.45 * CLOCK_RATE["video"] < gap < 0.8 * CLOCK_RATE["video"]

    run(scenario())


def test_late_retransmissions_from_before_the_start_are_dropped_and_later_ones_kept() -> None:
    async def scenario() -> None:
        publication = _publication("video", [])
        slot = SlotForwarder("video", FakeSender)
        slot.attach(publication)
        await publication.on_packet(_packet(200, 3000, KEY_START))
        await publication.on_packet(_packet(202, 3000, MIDDLE))
        await publication.on_packet(_packet(199, 0, MIDDLE))  # before the slot's first packet
        await publication.on_packet(_packet(201, 3000, MIDDLE))  # repaired, late: still wanted
        assert [p.sequence_number for p, _ in _sent(slot)] == [200, 202, 201]

    run(scenario())


def test_sender_reports_keep_the_publishers_clock() -> None:
    """A slot's reports map its timestamps to the wall-clock time the publisher's own reports
    give them: a publisher's audio and video stay in sync in the subscriber's browser."""

    async def scenario() -> None:
        publication = _publication("audio", [])
        slot = SlotForwarder("audio", FakeSender)
        slot.attach(publication)
        ntp = 0x1234_5678_0000_0000
        publication.on_sender_report(555, ntp, 48_000)
        publication.on_sender_report(999, 0, 0)  # another SSRC's report changes nothing
        await publication.on_packet(_packet(1, 48_000 + CLOCK_RATE["audio"] // 2, b"opus"))
        await publication.on_packet(_packet(2, 48_000 - CLOCK_RATE["audio"], b"opus"))
        (_, half_second_later), (_, second_before) = _sent(slot)
        assert half_second_later == ntp + (1 << 31)
        assert second_before == ntp - (1 << 32)

    run(scenario())


def test_a_waiting_slot_keeps_asking_until_a_keyframe_arrives_then_stops() -> None:
    """The keyframe the first request produced may be lost: while the slot waits, every
    interval with packets arriving sends one more request, and none once a keyframe came."""

    async def scenario() -> None:
        requests: list[int] = []
        publication = _publication("video", requests)
        slot = SlotForwarder("video", FakeSender)
        slot.attach(publication)
        for interval in range(3):
            for seq in range(5):  # a burst of interframe packets: one request per interval
                await publication.on_packet(_packet(interval * 10 + seq, 0, DELTA_START))
            await asyncio.sleep(KEYFRAME_REQUEST_INTERVAL + 0.05)
            assert len(requests) == interval + 2
        await publication.on_packet(_packet(100, 3000, KEY_START))
        asked = len(requests)
        for seq in range(101, 106):
            await publication.on_packet(_packet(seq, 6000, DELTA_START))
        await asyncio.sleep(KEYFRAME_REQUEST_INTERVAL + 0.05)
        assert len(requests) == asked
        assert len(_sent(slot)) == 6

    run(scenario())


def test_keyframe_requests_are_throttled_but_never_dropped() -> None:
    async def scenario() -> None:
        requests: list[int] = []
        publication = _publication("video", requests)
        for _ in range(5):
            publication.request_keyframe()
        assert len(requests) == 1
        await asyncio.sleep(KEYFRAME_REQUEST_INTERVAL + 0.1)
        assert len(requests) == 2

    run(scenario())


def _remb(bitrate: int) -> RtcpPsfbPacket:
    return RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(bitrate, [FakeSender.ssrc])
    )


def _report(lost: float) -> RtcpRrPacket:
    """A subscriber's receiver report of the slot's stream, `lost` of its packets missing."""
    info = RtcpReceiverInfo(
        ssrc=FakeSender.ssrc,
        fraction_lost=int(lost * 256),
        packets_lost=0,
        highest_sequence=0,
        jitter=0,
        lsr=0,
        dlsr=0,
    )
    return RtcpRrPacket(ssrc=1, reports=[info])


def test_the_weakest_subscriber_caps_the_publishers_video() -> None:
    """A subscriber that loses packets holds the publisher down to what it can take (its REMB);
    one whose estimate is low but loses nothing does not (browsers' estimates start low)."""

    async def scenario() -> None:
        advised: list[int] = []
        publication = Publication("video", 555, lambda: True, advised.append)
        strong = SlotForwarder("video", FakeSender)
        weak = SlotForwarder("video", FakeSender)
        for slot in (strong, weak):
            slot.attach(publication)
        strong.on_feedback(_remb(200_000))  # a browser's estimate at the start of a call
        strong.on_feedback(_report(0.01))
        assert advised == []  # nothing lost: nobody is short of what the publisher sends
        weak.on_feedback(_remb(300_000))
        weak.on_feedback(_report(0.2))
        assert advised == [300_000]
        weak.on_feedback(_report(0.2))  # the same again: the publisher is not told twice
        assert advised == [300_000]
        weak.on_feedback(_remb(50_000))
        weak.on_feedback(_report(0.3))
        assert advised[-1] == MIN_VIDEO_BITRATE  # never below a picture worth sending
        weak.attach(None)  # the weak subscriber leaves: it holds the cap down no longer
        strong.on_feedback(_remb(2_000_000))
        strong.on_feedback(_report(0.2))  # a fifth lost, but its estimate is high
        assert advised[-1] == int(MAX_VIDEO_BITRATE * (1 - 51 / 256))

    run(scenario())


def test_audio_levels_tell_who_is_speaking() -> None:
    async def scenario() -> None:
        publication = _publication("audio", [])
        assert publication.speaking_level() is None
        quiet = _packet(1, 0, b"opus")
        quiet.extensions.audio_level = (False, 120)
        await publication.on_packet(quiet)
        assert publication.speaking_level() is None
        loud = _packet(2, 960, b"opus")
        loud.extensions.audio_level = (True, 30)
        await publication.on_packet(loud)
        assert publication.speaking_level() == 30

    run(scenario())
