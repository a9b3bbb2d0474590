"""Signalling messages: what each side encodes, the other decodes; anything else is refused."""

from __future__ import annotations

import json

import pytest

from shared.protocol import (
    MAX_MESSAGE_BYTES,
    CheckAnswer,
    CheckOffer,
    Join,
    NodeOffer,
    Offer,
    ProtocolError,
    Slots,
    decode,
)


def test_messages_round_trip() -> None:
    for message in (
        Offer(sdp="v=0"),
        Join(space="abc"),
        NodeOffer(call="c", participant="p", name="Anna", sdp="v=0", connection="k"),
        Slots(slots=[{"slot": 0, "participant": "p", "name": "Anna"}]),
        CheckOffer(phase="relay", leg="receive", sdp="v=0"),
        CheckAnswer(phase="direct", leg="send", sdp="v=0"),
    ):
        assert decode(message.encode()) == message


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not an object"),
        ('{"v": 2, "type": "offer", "sdp": "x"}', "version"),
        ('{"v": 1, "type": "no-such-type"}', "unexpected message type"),
        ('{"v": 1, "type": "offer"}', "missing sdp"),
        ('{"v": 1, "type": "offer", "sdp": ""}', "sdp must be"),
        ('{"v": 1, "type": "offer", "sdp": 42}', "sdp must be"),
        ('{"v": 1, "type": "join", "space": "' + "x" * 65 + '"}', "space must be"),
        ('{"v": 1, "type": "check-offer", "phase": "x", "leg": "send", "sdp": "v"}', "phase"),
        ('{"v": 1, "type": "check-offer", "phase": "direct", "leg": "x", "sdp": "v"}', "leg"),
        ('{"v": 1, "type": "check-offer", "phase": "direct", "leg": "send"}', "missing sdp"),
    ],
)
def test_malformed_messages_are_refused(raw: str, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        decode(raw)


def test_only_allowed_types_are_accepted() -> None:
    with pytest.raises(ProtocolError, match="unexpected message type 'join'"):
        decode(Join(space="abc").encode(), Offer)


def test_oversized_message_is_refused_before_parsing() -> None:
    raw = json.dumps({"v": 1, "type": "offer", "sdp": "x" * MAX_MESSAGE_BYTES})
    with pytest.raises(ProtocolError, match="too large"):
        decode(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 10_000,
        '{"a":' * 10_000,
        '{"v": 1, "type": "offer", "sdp": [[[[["v=0"]]]]]}',
    ],
)
def test_nesting_deeper_than_any_message_is_refused_before_parsing(raw: str) -> None:
    with pytest.raises(ProtocolError, match="nested deeper than 4 levels"):
        decode(raw)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    slots = Slots(slots=[{"slot": 0, "participant": "p", "name": '[[[[{{{{ \\" ]]'}])
    assert decode(slots.encode()) == slots


def test_unterminated_strings_are_not_json() -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        decode('{"v": 1, "type": "offer", "sdp": "' + '\\"' * 1000)


def test_a_check_offer_names_one_of_its_checks_four_participants() -> None:
    """The participant ids come from a closed list: a check's socket can offer for nobody
    else, whatever the page sends."""
    ids = {
        CheckOffer(phase=phase, leg=leg, sdp="v=0").participant
        for phase in ("direct", "relay")
        for leg in ("send", "receive")
    }
    assert ids == {"direct-send", "direct-receive", "relay-send", "relay-receive"}
