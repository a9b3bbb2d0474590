"""Every Redis key, pub/sub channel and TTL of the live state, in one place.

Live state forgets by design: every key carries a TTL, so a crash can strand nothing for long.
The Celery broker lives in another database index (see `Settings.celery_broker_url`).
"""

from __future__ import annotations

PREFIX = "vc"


def space(space_id: str) -> str:
    """HASH: one patient space — clinic_id, entry fields, status, call_id, entered_at, last_seen."""
    return f"{PREFIX}:space:{space_id}"


def space_activity(space_id: str) -> str:
    """LIST: JSON {at, what, by} of what happened to a patient space (arrived, joined, resumed,
    added, held, message, transferred, ended: a call that ended with the patient back in the
    waiting area); lives and dies with the space."""
    return f"{PREFIX}:space:{space_id}:activity"


def space_messages(space_id: str) -> str:
    """LIST: JSON {text, at} of the clinic's messages to a patient; lives and dies with the
    space."""
    return f"{PREFIX}:space:{space_id}:messages"


def space_token(token_hash: str) -> str:
    """STRING: the space id a patient's token opens (the token itself is never stored)."""
    return f"{PREFIX}:space-token:{token_hash}"


def ended_space_token(token_hash: str) -> str:
    """STRING: why the space a patient's token opened ended (a reason, nothing personal), for
    ENDED_TOKEN_TTL: a page that reconnects after its consultation ended says why it did."""
    return f"{PREFIX}:ended-token:{token_hash}"


#: Seconds an ended space's reason is kept: longer than a page's reconnection attempts last.
ENDED_TOKEN_TTL = 3600


def waiting_area(clinic_id: int) -> str:
    """ZSET: the clinic's patient spaces, scored by the time each patient entered."""
    return f"{PREFIX}:clinic:{clinic_id}:waiting-area"


#: Pattern matching every clinic's waiting area (for housekeeping's SCAN).
WAITING_AREAS = f"{PREFIX}:clinic:*:waiting-area"


def clinic_events(clinic_id: int) -> str:
    """Channel: waiting-area changes (arrived, updated, left) for every dashboard of the clinic."""
    return f"{PREFIX}:clinic:{clinic_id}:events"


def space_events(space_id: str) -> str:
    """Channel: what happens to one patient space (a clinician joins, the consultation ends)."""
    return f"{PREFIX}:space:{space_id}:events"


def call(call_id: str) -> str:
    """HASH: one call — kind (`space`, `room` or `check`: a pre-call check), clinic_id,
    space_id or room (key), node_id, started_at, clinician_id, locked_at (a locked room),
    request_id (of the request that opened it, for the logs), and `seen:<participant>` (when
    that participant's page was last connected)."""
    return f"{PREFIX}:call:{call_id}"


def call_spaces(call_id: str) -> str:
    """SET: the patient spaces in a consultation call (a call ends with its last patient)."""
    return f"{PREFIX}:call:{call_id}:spaces"


def call_participants(call_id: str) -> str:
    """ZSET: who is inside a call (participant ids), scored by when their page last answered."""
    return f"{PREFIX}:call:{call_id}:participants"


def call_people(call_id: str) -> str:
    """HASH: participant id → JSON {name, role} of everyone inside a call."""
    return f"{PREFIX}:call:{call_id}:people"


def call_media(call_id: str) -> str:
    """HASH: participant id → which of their microphone and camera are off: "" (none), "a",
    "v" or "av". Those not in it have both on."""
    return f"{PREFIX}:call:{call_id}:media"


def room_call(room_key: str) -> str:
    """STRING: the id of a room's call while someone is inside it (CALL_TTL)."""
    return f"{PREFIX}:room:{room_key}:call"


#: SET: ids of the room calls open now (for beat's sweep of people who vanished).
ROOM_CALLS = f"{PREFIX}:room-calls"


def clinic_rooms(clinic_id: int) -> str:
    """Channel: who is inside each of a clinic's rooms, whenever that changes (room lists)."""
    return f"{PREFIX}:clinic:{clinic_id}:rooms"


def call_events(call_id: str) -> str:
    """Channel: events for everyone in a call (media ready, call ended)."""
    return f"{PREFIX}:call:{call_id}:events"


def participant_signal(call_id: str, participant_id: str) -> str:
    """Channel: the media node's answers and slot maps for one participant's socket."""
    return f"{PREFIX}:call:{call_id}:participant:{participant_id}"


MEDIA_NODES = f"{PREFIX}:media:nodes"
"""ZSET: registered media node ids, scored by their current load (participants hosted). A node
stays here after its entry expires until the reaper has moved its calls."""


def media_node(node_id: str) -> str:
    """HASH: one media node — id, address, capacity and track_capacity (what it takes),
    participants (`load`), tracks (forwarded now), rooms, pps (packets forwarded per second),
    cpu (share of a core its process used since the last heartbeat), draining (0/1), counters;
    lives NODE_TTL_HEARTBEATS heartbeats after the last one."""
    return f"{PREFIX}:media:node:{node_id}"


def media_node_calls(node_id: str) -> str:
    """SET: the calls allocated to one media node, hosted or on their way (kept by the
    allocation, failover and call-ending scripts); refreshed to CALL_TTL on each allocation."""
    return f"{PREFIX}:media:node:{node_id}:calls"


def media_node_draining(node_id: str) -> str:
    """STRING: set by `vidclinic media drain`: the node takes no new calls and exits once its
    calls have ended; lives DRAIN_TTL."""
    return f"{PREFIX}:media:node:{node_id}:draining"


#: ZSET: calls that have no media node (none had room, or theirs failed and none could take
#: them), scored by when they lost it; the reaper places them as soon as a node has room.
UNPLACED_CALLS = f"{PREFIX}:media:unplaced"


def media_node_inbox(node_id: str) -> str:
    """LIST: signalling commands for one media node (offers, leaves, room closes), oldest first.

    Bounded (MAX_INBOX_OFFERS, MAX_INBOX); refreshed to CALL_TTL on each command.
    """
    return f"{PREFIX}:media:node:{node_id}:inbox"


#: Commands waiting in a node's inbox beyond which an offer is refused (`media-busy`).
MAX_INBOX_OFFERS = 200
#: Commands waiting in a node's inbox beyond which anything is refused.
MAX_INBOX = 2000


def entry_rate(subject: str) -> str:
    """STRING counter: patient entries this minute from one address network or into one clinic
    (`subject` is a keyed digest, see shared/throttle.py); lives ENTRY_RATE_WINDOW."""
    return f"{PREFIX}:entry-rate:{subject}"


def check_rate(subject: str) -> str:
    """STRING counter: pre-call checks this minute from one address network (`subject` is a
    keyed digest, see shared/throttle.py); lives CHECK_RATE_WINDOW."""
    return f"{PREFIX}:check-rate:{subject}"


CHECKS = f"{PREFIX}:checks"
"""ZSET: the ids of the pre-call checks' calls (`call(id)`, kind `check`), scored by the Unix
time each must have ended by; beat ends those its socket left behind. Refreshed to CHECK_TTL on
each check."""


def login_failures(subject: str) -> str:
    """HASH: sign-in attempts of one subject (a keyed digest of an account and address network, of
    an address network, or of a known device) — `attempts` so far and `next_at`, the Unix time
    before which the next attempt is refused; lives SIGN_IN_MEMORY after the last attempt."""
    return f"{PREFIX}:login-failures:{subject}"


def guest_session(token_hash: str) -> str:
    """HASH: a guest's session in one room — participant, name, clinic_id, room_key, link_id,
    link_made_at, spent (1 once this guest spent a single-use link); lives no longer than its
    link (and 12 hours at most)."""
    return f"{PREFIX}:guest:{token_hash}"


def guest_link_sessions(link_id: int) -> str:
    """SET: the guest-session keys made from one guest link (to end them when it is revoked)."""
    return f"{PREFIX}:guest-link:{link_id}:sessions"


def guest_link_events(link_id: int) -> str:
    """Channel: a guest link was revoked; its guests' sockets close."""
    return f"{PREFIX}:guest-link:{link_id}:events"


def delivery_sent(delivery_id: int) -> str:
    """STRING: set once an email or SMS has gone out, so a repeated task sends nothing (7 days)."""
    return f"{PREFIX}:delivery:{delivery_id}:sent"


def delivery_sending(delivery_id: int) -> str:
    """STRING: held while one attempt sends a delivery (two attempts never send at once)."""
    return f"{PREFIX}:delivery:{delivery_id}:sending"


DELIVERY_SENT_TTL = 7 * 24 * 3600


def arrival_email(clinic_id: int, user_id: int) -> str:
    """STRING: a member was emailed of an arrival at a clinic lately (ARRIVAL_EMAIL_GAP)."""
    return f"{PREFIX}:arrival-email:{clinic_id}:{user_id}"


#: Seconds between two arrival emails to one member about one clinic.
ARRIVAL_EMAIL_GAP = 5 * 60


def staff_session(session_hash: str) -> str:
    """STRING: the user id a signed-in session (its id's SHA-256) belongs to; lives the session's
    lifetime (VIDCLINIC_SESSION_HOURS) and is deleted when its owner signs out."""
    return f"{PREFIX}:staff-session:{session_hash}"


def user_sessions(user_id: int) -> str:
    """SET: the staff_session keys of one user (to end them all when their password changes);
    lives as long as their latest session."""
    return f"{PREFIX}:user:{user_id}:sessions"


def space_owner(space_id: str) -> str:
    """The owner name of a patient's sockets: the space their token opens."""
    return f"space:{space_id}"


def guest_owner(participant: str) -> str:
    """The owner name of a guest's sockets: their guest session's participant id."""
    return f"guest:{participant}"


def user_owner(user_id: int) -> str:
    """The owner name of a team member's sockets."""
    return f"user:{user_id}"


def sockets(owner: str) -> str:
    """ZSET: the open sockets of one owner (see space_owner, user_owner), connection ids scored
    by the Unix time each opened; lives SOCKETS_TTL after the last opening."""
    return f"{PREFIX}:sockets:{owner}"


def socket_control(owner: str) -> str:
    """Channel: `close-socket` notices for the sockets of one owner (replaced by newer ones, the
    member's access changed, the session signed out), heard by every web process."""
    return f"{PREFIX}:sockets:{owner}:control"


#: Seconds the call-to-node assignment lives after the last participant left.
CALL_TTL = 4 * 3600
#: A media node's registry entry outlives its last heartbeat by this many heartbeats; beat's
#: reaper runs once a heartbeat, so a dead node's calls move within (this + 1) heartbeats.
NODE_TTL_HEARTBEATS = 4
#: Seconds a drain request lasts (a node that never empties is drained again by its operator).
DRAIN_TTL = 24 * 3600
#: Seconds a window of patient entries lasts.
ENTRY_RATE_WINDOW = 60
#: Seconds a window of pre-call checks lasts.
CHECK_RATE_WINDOW = 60
#: Seconds a pre-call check's call hash lives past its deadline at most (beat ends it sooner).
CHECK_TTL_MARGIN = 120
#: Seconds sign-in attempts are remembered after the last one: longer than the longest delay,
#: so waiting the delay out never resets the count.
SIGN_IN_MEMORY = 24 * 3600
#: Seconds an owner's socket set outlives its latest socket's opening.
SOCKETS_TTL = 24 * 3600
