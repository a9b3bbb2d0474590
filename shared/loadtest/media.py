"""Synthetic media for participants that are programs: raw frames for those whose media aiortc
encodes (the test bots), and a clip encoded once and replayed for the load tester's many
participants, so a hundred of them cost no more encoding than one.

Nothing here needs numpy: frames are filled plane by plane from bytes.
"""

from __future__ import annotations

import array
import asyncio
import fractions
import math
import random
import time
from dataclasses import dataclass
from functools import cache

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import AUDIO_PTIME, VIDEO_CLOCK_RATE, VIDEO_PTIME
from av import AudioFrame, VideoFrame

AUDIO_RATE = 48000
#: Frames a second of the synthetic video (aiortc's own pace).
FRAME_RATE = round(1 / VIDEO_PTIME)


def picture(index: int, width: int = 320, height: int = 240) -> VideoFrame:
    """Frame `index` of a small video whose content changes every frame (a moving bar over a
    background whose colour drifts), so consecutive frames really differ."""
    frame = VideoFrame(width, height, "yuv420p")
    luma, chroma_u, chroma_v = frame.planes
    rows = bytearray([40]) * luma.buffer_size
    bar, stride = (index * 4) % height, luma.line_size
    end = min(height, bar + height // 10)
    rows[bar * stride : end * stride] = bytes([220]) * ((end - bar) * stride)
    luma.update(bytes(rows))
    chroma_u.update(bytes([(index * 7) % 255]) * chroma_u.buffer_size)
    chroma_v.update(bytes([128]) * chroma_v.buffer_size)
    return frame


def tone(first_sample: int, samples: int, channels: int = 1) -> AudioFrame:
    """`samples` of a 440 Hz tone from sample `first_sample` on, 16-bit at 48 kHz."""
    pcm = array.array(
        "h",
        (
            int(8000 * math.sin(2 * math.pi * 440 * (first_sample + n) / AUDIO_RATE))
            for n in range(samples)
            for _ in range(channels)
        ),
    )
    frame = AudioFrame(format="s16", layout="mono" if channels == 1 else "stereo", samples=samples)
    frame.planes[0].update(pcm.tobytes())
    frame.sample_rate = AUDIO_RATE
    frame.pts = first_sample
    frame.time_base = fractions.Fraction(1, AUDIO_RATE)
    return frame


class MovingPicture(MediaStreamTrack):
    """Raw video frames in real time, for aiortc to encode (see `picture`)."""

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self._start: float | None = None
        self._count = 0
        self._size = (width, height)

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        self._count += 1
        await asyncio.sleep(max(0.0, self._start + self._count * VIDEO_PTIME - time.monotonic()))
        frame = picture(self._count, *self._size)
        frame.pts = int(self._count * VIDEO_PTIME * VIDEO_CLOCK_RATE)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        return frame


class Tone(MediaStreamTrack):
    """A 440 Hz tone in 20 ms raw frames, in real time, for aiortc to encode."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._samples = 0

    async def recv(self) -> AudioFrame:
        per_frame = int(AUDIO_PTIME * AUDIO_RATE)
        if self._start is None:
            self._start = time.monotonic()
        await asyncio.sleep(max(0.0, self._start + self._samples / AUDIO_RATE - time.monotonic()))
        frame = tone(self._samples, per_frame)
        self._samples += per_frame
        return frame


@dataclass(frozen=True)
class Clip:
    """Encoded frames to replay in a loop; the first is a keyframe."""

    kind: str
    frames: tuple[bytes, ...]
    #: Clock ticks from one frame to the next (time base 1/`clock_rate`).
    step: int
    clock_rate: int

    @property
    def bitrate(self) -> float:
        """Bits per second when played at its pace."""
        seconds = len(self.frames) * self.step / self.clock_rate
        return sum(len(f) for f in self.frames) * 8 / seconds


@cache
def video_clip(kbps: int = 500, seconds: float = 2.0, width: int = 320, height: int = 240) -> Clip:
    """VP8 at about `kbps` (a browser caps its camera at 600 kbps), `width`x`height` at 30
    frames a second, one keyframe at the start of each loop."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.framerate = fractions.Fraction(FRAME_RATE, 1)
    codec.time_base = fractions.Fraction(1, FRAME_RATE)
    codec.bit_rate = kbps * 1000
    count = round(seconds * FRAME_RATE)
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",
        "kf-max-dist": str(count),
        "kf-min-dist": str(count),
    }
    # A band of noise: what the encoder cannot predict sets the rate (libvpx's own rate
    # control overshoots on a picture this small); 24 rows of 320 pixels make about 500 kbps.
    rows = max(2, round(24 * 320 / width * kbps / 500))
    noise = random.Random(11).randbytes(width * height * 2)
    frames: list[bytes] = []
    for index in range(count):
        frame = picture(index, width, height)
        luma = bytearray(bytes(frame.planes[0]))
        band = rows * frame.planes[0].line_size
        offset = (index * 997) % (width * height)
        luma[:band] = noise[offset : offset + band]
        frame.planes[0].update(bytes(luma))
        frame.pts = index
        frame.time_base = codec.time_base
        frames += [bytes(p) for p in codec.encode(frame)]
    frames += [bytes(p) for p in codec.encode(None)]
    return Clip("video", tuple(frames), VIDEO_CLOCK_RATE // FRAME_RATE, VIDEO_CLOCK_RATE)


@cache
def audio_clip(seconds: float = 1.0) -> Clip:
    """Opus, 20 ms frames of a tone, about 32 kbps."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format = AUDIO_RATE, "stereo", "s16"
    codec.bit_rate = 32000
    codec.time_base = fractions.Fraction(1, AUDIO_RATE)
    per_frame = int(AUDIO_PTIME * AUDIO_RATE)
    frames: list[bytes] = []
    for index in range(round(seconds / AUDIO_PTIME)):
        frames += [bytes(p) for p in codec.encode(tone(index * per_frame, per_frame, 2))]
    return Clip("audio", tuple(frames), per_frame, AUDIO_RATE)


class ClipTrack(MediaStreamTrack):
    """Plays a clip in a loop, in real time, as encoded packets: aiortc's sender packs them
    into RTP without encoding anything. A keyframe request restarts the loop at its keyframe,
    as a browser answers one with a keyframe."""

    def __init__(self, clip: Clip) -> None:
        super().__init__()
        self.kind = clip.kind
        self._clip = clip
        self._start: float | None = None
        self._count = 0
        self._index = 0

    def request_keyframe(self) -> None:
        """The next frame is the clip's keyframe."""
        self._index = 0

    async def recv(self) -> av.Packet:
        clip = self._clip
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._count * clip.step / clip.clock_rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        packet = av.Packet(clip.frames[self._index])
        packet.pts = self._count * clip.step
        packet.time_base = fractions.Fraction(1, clip.clock_rate)
        self._count += 1
        self._index = (self._index + 1) % len(clip.frames)
        return packet
