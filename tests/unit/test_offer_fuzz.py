"""Fuzzing the node's offer handling with offers generated from a real browser's.

Each generated offer (lines of Chromium's offer dropped, repeated — hundreds of times —,
changed or inserted) must either be answered or refused with BadOffer, never anything else,
within a time and memory bound: what a crafted offer can cost the node is bounded.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media.ice import use_host_addresses
from media.participant import Participant
from media.sdp import BadOffer
from tests.support.aio import run

FIXTURES = Path(__file__).parent.parent / "fixtures"
CHROMIUM = (FIXTURES / "chromium-offer.sdp").read_bytes().decode()
LINES = CHROMIUM.rstrip("\r\n").split("\r\n")
#: Bounds for one offer, far above what a valid one costs (~30 ms, ~2 MB) and far below what
#: the amplified offer once cost (18 s, 1.4 GB).
MAX_SECONDS = 2.0
MAX_PEAK_MIB = 64

TEXT = st.text(alphabet=st.sampled_from("am=:0129 ./-xyzUDPTLSRVF\t"), max_size=60)
EDIT = st.tuples(
    st.sampled_from(("drop", "repeat", "change", "insert", "truncate")),
    st.integers(0, len(LINES) - 1),
    st.integers(1, 400),
    TEXT,
)


def _mutated(edits: list[tuple[str, int, int, str]]) -> str:
    lines = list(LINES)
    for kind, index, count, text in edits:
        index %= len(lines) or 1
        if not lines:
            lines.append(text)
        elif kind == "drop":
            del lines[index]
        elif kind == "repeat":
            lines[index:index] = [lines[index]] * count
        elif kind == "change":
            head, _, _value = lines[index].partition("=")
            lines[index] = f"{head}={text}"
        elif kind == "insert":
            lines.insert(index, text)
        else:
            lines[index] = lines[index][: count % (len(lines[index]) + 1)]
    return "\r\n".join(lines) + "\r\n"


async def _handle(sdp: str) -> str:
    """What the node does with one offer: 'answer' or 'bad-offer'."""
    try:
        participant, _answer = await Participant.connect("p", "P", sdp, "c", lambda _p: None)
    except BadOffer:
        return "bad-offer"
    await participant.close()
    return "answer"


def test_the_unmutated_offer_is_answered() -> None:
    use_host_addresses(("127.0.0.1",))
    assert run(_handle(_mutated([]))) == "answer"


def test_a_real_firefox_offer_is_answered_with_the_rooms_codecs() -> None:
    use_host_addresses(("127.0.0.1",))
    offer = (FIXTURES / "firefox-offer.sdp").read_bytes().decode()

    async def answer() -> str:
        participant, sdp = await Participant.connect("p", "P", offer, "c", lambda _p: None)
        await participant.close()
        return sdp

    sdp = run(answer())
    assert sdp.count("\r\nm=") == 12
    assert "a=group:BUNDLE 0 1 2 3 4 5 6 7 8 9 10 11" in sdp
    assert "VP8/90000" in sdp and "opus/48000" in sdp and "H264" not in sdp


@settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(EDIT, min_size=1, max_size=6))
def test_every_generated_offer_is_answered_or_refused_within_bounds(
    edits: list[tuple[str, int, int, str]],
) -> None:
    use_host_addresses(("127.0.0.1",))
    sdp = _mutated(edits)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        outcome = run(_handle(sdp))
        elapsed = time.perf_counter() - started
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome in ("answer", "bad-offer")
    assert elapsed < MAX_SECONDS, f"{elapsed:.2f} s for an offer of {len(sdp)} characters"
    assert peak / 2**20 < MAX_PEAK_MIB, f"{peak / 2**20:.0f} MiB for {len(sdp)} characters"
