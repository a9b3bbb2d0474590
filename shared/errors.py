"""Domain exceptions that carry data; web/errors.py turns them into responses and socket errors."""

from __future__ import annotations

from enum import StrEnum


class VidclinicError(Exception):
    """Base of every domain error; `code` is stable and safe to show to programs."""

    code = "error"


class SpaceNotFound(VidclinicError):
    """The patient space does not exist (any more)."""

    code = "space-not-found"


class SpaceAlreadyClaimed(VidclinicError):
    """Another clinician is already seeing this patient."""

    code = "already-being-seen"

    def __init__(self, by: str) -> None:
        super().__init__(by)
        self.by = by


class RoomFull(VidclinicError):
    """The call already holds `capacity` participants."""

    code = "room-full"

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.capacity = capacity


class MediaBusy(VidclinicError):
    """A media node's inbox is full: the command was not queued."""

    code = "media-busy"

    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self.node_id = node_id


class RoomLocked(VidclinicError):
    """The room is locked: nobody new comes in but guests whose link was made after the lock."""

    code = "room-locked"


class EntryRateLimited(VidclinicError):
    """Too many patient entries from one address; retry after `retry_after` seconds."""

    code = "rate-limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class ChecksRateLimited(VidclinicError):
    """Too many pre-call checks from one address network; retry after `retry_after` seconds."""

    code = "rate-limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class ChecksBusy(VidclinicError):
    """As many pre-call checks as the media nodes are allowed to host at once are running."""

    code = "checks-busy"


class MediaUnavailable(VidclinicError):
    """No live media node has room: nothing can be connected to now."""

    code = "media-unavailable"


class TooManyFailedSignIns(VidclinicError):
    """This sign-in attempt must wait (too many from here, or from this device); retry after
    `retry_after` seconds."""

    code = "too-many-sign-ins"

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class CloseReason(StrEnum):
    """Why a consultation or call ended (sent to browsers in `ended`)."""

    CLINICIAN_ENDED = "clinician-ended"
    PATIENT_LEFT = "patient-left"
    #: The patient left the waiting area before anyone saw them.
    LEFT_WAITING = "left-waiting"
    PATIENT_TIMED_OUT = "patient-timed-out"
    #: Everyone in the call closed their page without ending it.
    CALL_ABANDONED = "call-abandoned"
    #: A team member ended the patient's visit ("Remove").
    REMOVED = "removed"


class SocketCloseReason(StrEnum):
    """Why the server closed a browser's socket (the `code` of the `error` it gets first)."""

    #: The same patient token or team member opened a newer socket past the cap.
    REPLACED = "replaced"
    #: The member was removed from a clinic or given another role: reconnect to re-check.
    ACCESS_CHANGED = "access-changed"
    #: The session signed out or its lifetime ran out.
    SIGNED_OUT = "signed-out"
