"""Signed-in sessions recorded in Redis.

A session cookie alone proves nothing once its session has ended: signing out deletes the record
(every copy of the cookie stops working, and the session's open sockets close), and the record
expires VIDCLINIC_SESSION_HOURS after sign-in whatever the cookie says.
"""

from __future__ import annotations

import secrets

from flask import session
from flask_login import login_user, logout_user
from redis import Redis

from shared import keys
from shared.errors import SocketCloseReason
from shared.models import User
from shared.sockets import close_sockets
from shared.tokens import hash_token
from web.services import Services

#: Where the session's id is kept in the (signed) session cookie.
SESSION_ID = "sid"


def start(user: User) -> None:
    """Sign `user` in with a new session, recorded for the configured lifetime."""
    services = Services.current()
    session_id = secrets.token_urlsafe(32)
    lifetime = services.settings.session_hours * 3600
    session_key = keys.staff_session(hash_token(session_id))
    with services.redis.pipeline(transaction=True) as pipe:
        pipe.set(session_key, str(user.id), ex=lifetime)
        pipe.sadd(keys.user_sessions(user.id), session_key)
        pipe.expire(keys.user_sessions(user.id), lifetime)
        pipe.execute()
    session.clear()
    session.permanent = True
    session[SESSION_ID] = session_id
    login_user(user)


def current() -> str:
    """The hash of the request's session id, or "" when it carries none."""
    session_id = session.get(SESSION_ID)
    return hash_token(session_id) if isinstance(session_id, str) and session_id else ""


def user_of(redis: Redis, session_hash: str) -> int | None:
    """The user a session belongs to while it lasts; None once signed out or expired.

    Pages ask with their Redis pool, sockets with theirs.
    """
    if not session_hash:
        return None
    user_id = redis.get(keys.staff_session(session_hash))
    return int(user_id) if user_id else None


def seconds_left(redis: Redis, session_hash: str) -> int:
    """Seconds until the session's lifetime runs out (0 if it has ended)."""
    return max(0, int(redis.ttl(keys.staff_session(session_hash))))


def end(user_id: int) -> None:
    """Sign out: end the session for every copy of its cookie and close its open sockets."""
    session_hash = current()
    redis = Services.current().redis
    if session_hash:
        redis.delete(keys.staff_session(session_hash))
        close_sockets(
            redis, keys.user_owner(user_id), SocketCloseReason.SIGNED_OUT, session=session_hash
        )
    logout_user()
    session.clear()


def end_all(redis: Redis, user_id: int) -> None:
    """End every session of a user, wherever it is open (their password changed)."""
    index = keys.user_sessions(user_id)
    session_keys = redis.smembers(index)
    if session_keys:
        redis.delete(*session_keys)
    redis.delete(index)
    close_sockets(redis, keys.user_owner(user_id), SocketCloseReason.SIGNED_OUT)
