"""Signalling messages: typed, versioned, and free of I/O.

Every message on a socket or a Redis channel is a JSON object `{"v": 1, "type": ..., ...}`.
The same classes describe browser ↔ web, web → media node and media node → participant
messages, so each side decodes exactly what the other encodes.
"""

from __future__ import annotations

import json
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

VERSION = 1
MAX_MESSAGE_BYTES = 160 * 1024
# A browser offer with twelve m-sections runs to about 40 KB.
MAX_SDP_CHARS = 128 * 1024
#: Arrays and objects nested in one another at most: the deepest message (a list of cards or
#: slots inside a message) has three levels. Python's parser recurses once per level, so ten
#: thousand `[` would end in a RecursionError instead of a refusal.
MAX_DEPTH = 4

# A JSON string, or an unterminated one up to the end: possessive, and unable to fail once
# started, so no position is ever scanned twice and the pre-scan stays linear.
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]++")


class ProtocolError(ValueError):
    """A message is not valid JSON, has an unknown type, or a field of the wrong shape."""


class TextTooLong(ProtocolError):
    """A message's text is longer than its type allows (`limit` characters)."""

    def __init__(self, kind: str, limit: int) -> None:
        super().__init__(f"{kind}: text must be at most {limit} characters")
        self.kind = kind
        self.limit = limit


class NestedTooDeep(ProtocolError):
    """A JSON text nests arrays and objects deeper than MAX_DEPTH."""


def check_depth(text: str, limit: int = MAX_DEPTH) -> None:
    """Raise NestedTooDeep when `text` nests deeper than `limit`, before any parser recurses.

    One linear pass: strings are cut out first (brackets inside them do not count), then the
    remaining brackets are counted. Malformed text is left for the parser to refuse.
    """
    depth = 0
    for bracket in _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > limit:
                raise NestedTooDeep(f"nested deeper than {limit} levels")
        else:
            depth -= 1


@dataclass(frozen=True)
class Message:
    """Base of every signalling message."""

    type: ClassVar[str]

    def encode(self) -> str:
        """The message as one JSON text."""
        return json.dumps({"v": VERSION, "type": self.type, **asdict(self)}, separators=(",", ":"))


_REGISTRY: dict[str, type[Message]] = {}
M = TypeVar("M", bound=type[Message])


def message(cls: M) -> M:
    """Register a message class under its `type`."""
    _REGISTRY[cls.type] = cls
    return cls


def decode(raw: str | bytes, *allowed: type[Message]) -> Message:
    """Parse one message, accepting only the given classes; raises ProtocolError."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError("message too large")
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        check_depth(text)
        data = json.loads(text)
    except NestedTooDeep as exc:
        raise ProtocolError(f"message is {exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProtocolError("message is not JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError("message is not an object")
    if data.get("v") != VERSION:
        raise ProtocolError("unsupported protocol version")
    cls = _REGISTRY.get(str(data.get("type")))
    if cls is None or (allowed and cls not in allowed):
        raise ProtocolError(f"unexpected message type {data.get('type')!r}")
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ProtocolError(f"{cls.type}: missing {f.name}")
            continue
        values[f.name] = data[f.name]
    try:
        return cls(**values)
    except TextTooLong as exc:
        raise TextTooLong(cls.type, exc.limit) from None
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{cls.type}: {exc}") from None


def _require_str(name: str, value: object, limit: int) -> None:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValueError(f"{name} must be a non-empty string of at most {limit} characters")


# --- browser → web ------------------------------------------------------------------------------


@message
@dataclass(frozen=True)
class Offer(Message):
    """A participant's SDP offer: own audio and video, then five receive-only slot pairs."""

    type: ClassVar[str] = "offer"
    sdp: str

    def __post_init__(self) -> None:
        _require_str("sdp", self.sdp, MAX_SDP_CHARS)


@message
@dataclass(frozen=True)
class Join(Message):
    """A clinician asks to see the patient in a space (sent from the waiting-area dashboard)."""

    type: ClassVar[str] = "join"
    space: str

    def __post_init__(self) -> None:
        _require_str("space", self.space, 64)


def _require_text(text: object, limit: int) -> None:
    """A message from the clinic: plain text, not empty, at most `limit` characters."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be 1 to {limit} characters")
    if len(text) > limit:
        raise TextTooLong("text", limit)


#: Characters in one message from the clinic to a patient.
MAX_PATIENT_MESSAGE = 500


@message
@dataclass(frozen=True)
class Resume(Message):
    """The clinician who put a patient on hold takes them back into the call."""

    type: ClassVar[str] = "resume"
    space: str

    def __post_init__(self) -> None:
        _require_str("space", self.space, 64)


@message
@dataclass(frozen=True)
class Hold(Message):
    """The clinician puts a patient in their call on hold (back to waiting, media stopped)."""

    type: ClassVar[str] = "hold"
    space: str

    def __post_init__(self) -> None:
        _require_str("space", self.space, 64)


@message
@dataclass(frozen=True)
class AddToCall(Message):
    """The clinician brings a waiting patient into their call (a relative, an interpreter)."""

    type: ClassVar[str] = "add-to-call"
    space: str

    def __post_init__(self) -> None:
        _require_str("space", self.space, 64)


@message
@dataclass(frozen=True)
class Remove(Message):
    """A member ends a patient's visit: the patient is told, the space deleted."""

    type: ClassVar[str] = "remove"
    space: str

    def __post_init__(self) -> None:
        _require_str("space", self.space, 64)


@message
@dataclass(frozen=True)
class Transfer(Message):
    """A member moves a patient to another clinic they belong to (`clinic` is its slug)."""

    type: ClassVar[str] = "transfer"
    space: str
    clinic: str

    def __post_init__(self) -> None:
        _require_str("space", self.space, 64)
        _require_str("clinic", self.clinic, 64)


@message
@dataclass(frozen=True)
class SendMessage(Message):
    """A member writes to one waiting patient."""

    type: ClassVar[str] = "send-message"
    space: str
    text: str

    def __post_init__(self) -> None:
        _require_str("space", self.space, 64)
        _require_text(self.text, MAX_PATIENT_MESSAGE)


@message
@dataclass(frozen=True)
class MessageAll(Message):
    """A member writes to every waiting patient of the clinic."""

    type: ClassVar[str] = "message-all"
    text: str

    def __post_init__(self) -> None:
        _require_text(self.text, MAX_PATIENT_MESSAGE)


@message
@dataclass(frozen=True)
class Adopt(Message):
    """After its socket reconnected, a page whose peer connection to `node` still works asks to
    keep it rather than build a new one; `ufrag` (its offer's ICE username fragment) names
    that connection."""

    type: ClassVar[str] = "adopt"
    node: str
    ufrag: str

    def __post_init__(self) -> None:
        _require_str("node", self.node, 200)
        _require_str("ufrag", self.ufrag, 256)


@message
@dataclass(frozen=True)
class Leave(Message):
    """A participant leaves the call (for a patient this ends the consultation)."""

    type: ClassVar[str] = "leave"


@message
@dataclass(frozen=True)
class MediaState(Message):
    """A participant turned their microphone (`audio`) or camera (`video`) on or off: the
    others see a muted mark, or their name instead of a black picture."""

    type: ClassVar[str] = "media-state"
    audio: bool
    video: bool

    def __post_init__(self) -> None:
        if not isinstance(self.audio, bool) or not isinstance(self.video, bool):
            raise ValueError("audio and video must be true or false")


@message
@dataclass(frozen=True)
class Leaving(Message):
    """A waiting patient's page is closing on purpose (it says so as it unloads); unless it
    comes back at once (a reload), their visit ends."""

    type: ClassVar[str] = "leaving"


@message
@dataclass(frozen=True)
class Lock(Message):
    """Someone inside a room locks it (`locked` true) or unlocks it."""

    type: ClassVar[str] = "lock"
    locked: bool

    def __post_init__(self) -> None:
        if not isinstance(self.locked, bool):
            raise ValueError("locked must be true or false")


@message
@dataclass(frozen=True)
class EndCall(Message):
    """The clinician ends the consultation for everyone."""

    type: ClassVar[str] = "end-call"


@message
@dataclass(frozen=True)
class RefreshIceServers(Message):
    """A call page asks for fresh TURN credentials before its current ones expire (it asks
    halfway through their lifetime): the answer is `ice-servers`."""

    type: ClassVar[str] = "refresh-ice-servers"


# --- web → browser ------------------------------------------------------------------------------


@message
@dataclass(frozen=True)
class WaitingArea(Message):
    """The full list of waiting-area cards, sent when a dashboard connects.

    `typical_minutes` is how long the clinic's consultations last (the dashboard estimates the
    wait of a new patient from it and the cards).
    """

    type: ClassVar[str] = "waiting-area"
    spaces: list[dict[str, Any]]
    now: float
    typical_minutes: float = 0.0


@message
@dataclass(frozen=True)
class SettingsChanged(Message):
    """A clinic's admin saved its waiting-area settings: what patients are shown may change."""

    type: ClassVar[str] = "settings-changed"


@message
@dataclass(frozen=True)
class WaitingStatus(Message):
    """A waiting patient's place in the queue and estimated wait in minutes (0: not shown)."""

    type: ClassVar[str] = "waiting-status"
    position: int
    minutes: int


@message
@dataclass(frozen=True)
class SpaceChanged(Message):
    """A card arrived or changed on the waiting area (`event` is arrived or updated)."""

    type: ClassVar[str] = "space-changed"
    event: str
    space: dict[str, Any]


@message
@dataclass(frozen=True)
class SpacePresence(Message):
    """A patient's page connected again or lost its connection (since `disconnected_at`)."""

    type: ClassVar[str] = "space-presence"
    space: str
    connected: bool
    disconnected_at: float


@message
@dataclass(frozen=True)
class SpaceLeft(Message):
    """A card left the waiting area: the consultation ended or the patient left."""

    type: ClassVar[str] = "space-left"
    space: str


@message
@dataclass(frozen=True)
class Joined(Message):
    """The clinician's join succeeded: open the call page at `url`."""

    type: ClassVar[str] = "joined"
    call: str
    url: str


@message
@dataclass(frozen=True)
class CallStarted(Message):
    """Tells a waiting patient that a clinician has joined: connect media for this call."""

    type: ClassVar[str] = "call-started"
    call: str
    clinician: str


@message
@dataclass(frozen=True)
class Held(Message):
    """The clinician put the patient on hold: their media stops, they wait again."""

    type: ClassVar[str] = "held"
    clinician: str


@message
@dataclass(frozen=True)
class Transferred(Message):
    """The patient is moving to another clinic's waiting area (its id)."""

    type: ClassVar[str] = "transferred"
    clinic: int


@message
@dataclass(frozen=True)
class ClinicMessage(Message):
    """A message from the clinic to a waiting patient, shown as plain text."""

    type: ClassVar[str] = "clinic-message"
    text: str
    at: float


@message
@dataclass(frozen=True)
class BackToWaiting(Message):
    """The clinician left the call without ending it: the patient is back in the waiting
    area, in the place they had."""

    type: ClassVar[str] = "back-to-waiting"


@message
@dataclass(frozen=True)
class IceServers(Message):
    """The `iceServers` a call page builds its next peer connection with: STUN servers, and
    TURN servers with a credential of this participant's, valid for `ttl` seconds from now
    (0: nothing expires). Sent before a socket's `media-ready`, and on `refresh-ice-servers`."""

    type: ClassVar[str] = "ice-servers"
    servers: list[dict[str, Any]]
    ttl: int


@message
@dataclass(frozen=True)
class MediaReady(Message):
    """A media node hosts the call: the browser may send its offer now."""

    type: ClassVar[str] = "media-ready"
    call: str
    #: A browser offers again when the node changes (the call moved) or its socket reconnected.
    node: str


@message
@dataclass(frozen=True)
class MediaMoving(Message):
    """The call's media node is gone and no other node had room for it yet: the browser lets
    its peer connection go and offers again at the next `media-ready` ("Reconnecting…")."""

    type: ClassVar[str] = "media-moving"
    call: str


@message
@dataclass(frozen=True)
class Ended(Message):
    """The call or consultation is over; `reason` is a CloseReason value."""

    type: ClassVar[str] = "ended"
    reason: str


@message
@dataclass(frozen=True)
class Error(Message):
    """A request was refused; `code` is stable for programs, `message` is for people."""

    type: ClassVar[str] = "error"
    code: str
    message: str


@message
@dataclass(frozen=True)
class RoomState(Message):
    """Who is inside a call (`people`: id, name, role, and whether their microphone
    (`audio`) and camera (`video`) are on) and whether it is locked.

    Sent to the clinic's room lists and to everyone in the call whenever it changes; `room` is
    the room's key (empty for a consultation).
    """

    type: ClassVar[str] = "room-state"
    room: str
    people: list[dict[str, Any]]
    locked: bool


#: A pre-call check connects twice, directly and then through the relay (TURN) server when
#: one is configured, each time with a peer connection that sends and one that receives.
CHECK_PHASES = ("direct", "relay")
CHECK_LEGS = ("send", "receive")


@message
@dataclass(frozen=True)
class CheckOffer(Message):
    """One of a pre-call check's peer connections offers (browser → web); the same shape as a
    call's offer."""

    type: ClassVar[str] = "check-offer"
    phase: str
    leg: str
    sdp: str

    def __post_init__(self) -> None:
        if self.phase not in CHECK_PHASES:
            raise ValueError(f"phase must be one of {', '.join(CHECK_PHASES)}")
        if self.leg not in CHECK_LEGS:
            raise ValueError(f"leg must be one of {', '.join(CHECK_LEGS)}")
        _require_str("sdp", self.sdp, MAX_SDP_CHARS)

    @property
    def participant(self) -> str:
        """The participant id of this peer connection inside the check's call."""
        return f"{self.phase}-{self.leg}"


@message
@dataclass(frozen=True)
class CheckReady(Message):
    """A pre-call check has a media node: the page may offer, for `seconds` at most."""

    type: ClassVar[str] = "check-ready"
    seconds: int


@message
@dataclass(frozen=True)
class CheckAnswer(Message):
    """The media node's answer to one of a pre-call check's peer connections."""

    type: ClassVar[str] = "check-answer"
    phase: str
    leg: str
    sdp: str


# --- web → media node ---------------------------------------------------------------------------


@message
@dataclass(frozen=True)
class NodeOffer(Message):
    """A participant's offer, relayed to the node hosting the call."""

    type: ClassVar[str] = "node-offer"
    call: str
    participant: str
    name: str
    sdp: str
    #: The socket the offer came through; a later offer from a new socket replaces this one.
    connection: str
    #: The request that opened the call (the join): the node logs its lines for the offer with
    #: it, so one grep follows a call from the join through a worker to the node.
    request_id: str = ""


@message
@dataclass(frozen=True)
class NodeLeave(Message):
    """A participant left: the node closes its peer connection and frees its slots."""

    type: ClassVar[str] = "node-leave"
    call: str
    participant: str
    #: Only the connection this socket made is closed: a stale socket that closes late must not
    #: take down the connection the same participant has since made from a new one.
    connection: str
    #: The request that opened the call, as in NodeOffer.
    request_id: str = ""
    #: Seconds the node waits before acting: a socket that closed may come back and adopt the
    #: peer connection meanwhile (then this leave no longer matches and does nothing).
    grace: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.grace, int | float) or not 0 <= self.grace <= 60:
            raise ValueError("grace must be between 0 and 60 seconds")


@message
@dataclass(frozen=True)
class NodeAdopt(Message):
    """A participant's page reconnected through a new socket and still has its peer
    connection: the node takes the new socket's `connection` as that connection's own, if
    the connection's remote ICE username fragment is `ufrag` (else it answers `not-adopted`
    and the page offers again)."""

    type: ClassVar[str] = "node-adopt"
    call: str
    participant: str
    connection: str
    ufrag: str
    request_id: str = ""


@message
@dataclass(frozen=True)
class NodeCloseRoom(Message):
    """The call ended: the node closes every peer connection of the room."""

    type: ClassVar[str] = "node-close-room"
    call: str
    #: The request that ended the call.
    request_id: str = ""


# --- web → web ----------------------------------------------------------------------------------


@message
@dataclass(frozen=True)
class CloseSocket(Message):
    """Close some of one owner's sockets, on whichever web process holds them.

    `reason` is a SocketCloseReason value; an empty `connections` or `session` matches every
    socket of the owner, a non-empty one only those listed or opened by that session.
    """

    type: ClassVar[str] = "close-socket"
    reason: str
    connections: list[str] = field(default_factory=list)
    session: str = ""


# --- media node → participant -------------------------------------------------------------------
# Each names the node that sent it (`node`).


@message
@dataclass(frozen=True)
class Answer(Message):
    """The media node's SDP answer (it carries the node's ICE candidates)."""

    type: ClassVar[str] = "answer"
    sdp: str
    #: The node that sent it: a page ignores what a node it has left still says (one cut off
    #: from the network may deliver messages held up meanwhile once it is back).
    node: str = ""


@message
@dataclass(frozen=True)
class Slots(Message):
    """Which remote participant each receive slot carries; slots not listed are empty."""

    type: ClassVar[str] = "slots"
    slots: list[dict[str, Any]]
    #: The node that sent it: a page ignores what a node it has left still says (one cut off
    #: from the network may deliver messages held up meanwhile once it is back).
    node: str = ""


@message
@dataclass(frozen=True)
class Bitrate(Message):
    """What the publisher's video should be capped at (bits per second): what the weakest of
    its subscribers can take, as their receiver reports and REMB say."""

    type: ClassVar[str] = "bitrate"
    video: int
    #: The node that sent it: a page ignores what a node it has left still says (one cut off
    #: from the network may deliver messages held up meanwhile once it is back).
    node: str = ""


@message
@dataclass(frozen=True)
class Speaker(Message):
    """Who in the call is speaking now (a participant id; empty when nobody is), from the audio
    levels publishers' packets carry: the node decodes nothing to know it."""

    type: ClassVar[str] = "speaker"
    participant: str
    #: The node that sent it: a page ignores what a node it has left still says (one cut off
    #: from the network may deliver messages held up meanwhile once it is back).
    node: str = ""


#: Remote participants a browser can receive without renegotiating (a call holds up to 6).
SLOT_COUNT = 5
