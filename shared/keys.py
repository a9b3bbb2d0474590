"""Every Redis key, pub/sub channel and TTL of the live state, in one place.

Live state forgets by design: every key carries a TTL, so a crash can strand nothing for long.
The Celery broker lives in another database index (see `Settings.celery_broker_url`).
"""

from __future__ import annotations

PREFIX = "vc"


def space(space_id: str) -> str:
    """HASH: one patient space — clinic_id, entry fields, status, call_id, entered_at, last_seen."""
    return f"{PREFIX}:space:{space_id}"


def space_token(token_hash: str) -> str:
    """STRING: the space id a patient's token opens (the token itself is never stored)."""
    return f"{PREFIX}:space-token:{token_hash}"


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
    """HASH: one call — kind, clinic_id, space_id, node_id, started_at, clinician_id."""
    return f"{PREFIX}:call:{call_id}"


def call_events(call_id: str) -> str:
    """Channel: events for everyone in a call (media ready, call ended)."""
    return f"{PREFIX}:call:{call_id}:events"


def participant_signal(call_id: str, participant_id: str) -> str:
    """Channel: the media node's answers and slot maps for one participant's socket."""
    return f"{PREFIX}:call:{call_id}:participant:{participant_id}"


MEDIA_NODES = f"{PREFIX}:media:nodes"
"""ZSET: registered media node ids, scored by their current load (participants hosted)."""


def media_node(node_id: str) -> str:
    """HASH: one media node — id, address, capacity, load, counters; lives while it heartbeats."""
    return f"{PREFIX}:media:node:{node_id}"


def media_node_inbox(node_id: str) -> str:
    """LIST: signalling commands for one media node (offers, leaves, room closes), oldest first."""
    return f"{PREFIX}:media:node:{node_id}:inbox"


def entry_rate(subject: str) -> str:
    """STRING counter: patient entries this minute from one address network or into one clinic
    (`subject` is a keyed digest, see shared/throttle.py); lives ENTRY_RATE_WINDOW."""
    return f"{PREFIX}:entry-rate:{subject}"


def login_failures(subject: str) -> str:
    """HASH: sign-in attempts of one subject (a keyed digest of an account and address network, of
    an address network, or of a known device) — `attempts` so far and `next_at`, the Unix time
    before which the next attempt is refused; lives SIGN_IN_MEMORY after the last attempt."""
    return f"{PREFIX}:login-failures:{subject}"


def staff_session(session_hash: str) -> str:
    """STRING: the user id a signed-in session (its id's SHA-256) belongs to; lives the session's
    lifetime (VIDCLINIC_SESSION_HOURS) and is deleted when its owner signs out."""
    return f"{PREFIX}:staff-session:{session_hash}"


def space_owner(space_id: str) -> str:
    """The owner name of a patient's sockets: the space their token opens."""
    return f"space:{space_id}"


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
#: Seconds a media node's registry entry outlives its last heartbeat, in heartbeats.
NODE_TTL_HEARTBEATS = 3
#: Seconds a window of patient entries lasts.
ENTRY_RATE_WINDOW = 60
#: Seconds sign-in attempts are remembered after the last one: longer than the longest delay,
#: so waiting the delay out never resets the count.
SIGN_IN_MEMORY = 24 * 3600
#: Seconds an owner's socket set outlives its latest socket's opening.
SOCKETS_TTL = 24 * 3600
