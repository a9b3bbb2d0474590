"""One settings object for every process, filled from the environment in one place."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


class SettingsError(ValueError):
    """An environment variable is missing or malformed; the message names it."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def celery_broker_from_redis(redis_url: str) -> str:
    """Celery gets the next database index of the same Redis: its keys never mix with live state."""
    parts = urlsplit(redis_url)
    path = parts.path.strip("/")
    index = int(path) if path.isdigit() else 0
    return urlunsplit((parts.scheme, parts.netloc, f"/{index + 1}", parts.query, parts.fragment))


@dataclass(frozen=True)
class Settings:
    """Everything a vidclinic process needs to know about its surroundings."""

    redis_url: str
    database_url: str
    secret_key: str
    celery_broker_url: str = ""
    #: Seconds a patient space lives at most, whatever happens (the privacy backstop).
    space_ttl: int = 4 * 3600
    #: Seconds a waiting patient may be disconnected before housekeeping removes the space.
    patient_grace: int = 120
    #: Seconds between housekeeping sweeps of the waiting areas (beat).
    housekeeping_interval: int = 15
    #: Participants a media node takes before allocation passes it over.
    media_capacity: int = 60
    #: Stable id of this media node; random per start when empty.
    media_node_id: str = ""
    #: Addresses the media node gathers ICE host candidates on; empty means the host's own.
    media_addresses: tuple[str, ...] = ()
    #: Seconds between media-node heartbeats; the registry entry lives three of them.
    media_heartbeat: int = 2
    #: ICE servers (STUN/TURN) handed to browsers, as the RTCPeerConnection `iceServers` list.
    ice_servers: tuple[dict[str, object], ...] = ()
    #: Patient entries allowed per client address (an IPv6 client's /64) per minute.
    entry_rate_per_minute: int = 10
    #: Patient entries allowed into one clinic per minute, from all addresses together.
    clinic_entry_rate_per_minute: int = 120
    #: Reverse proxies in front of web whose X-Forwarded-* headers are trusted (0: none), so the
    #: entry rate limit counts patients' addresses rather than the proxy's.
    proxy_hops: int = 0
    #: Sign-in attempts per account from one address (or from one known browser) before each
    #: further one waits, twice as long as the last (ten times as many per address).
    sign_in_attempts: int = 10
    #: Hours a sign-in lasts at most; signing out ends it at once.
    session_hours: int = 12
    #: Sockets one patient token may hold open at once; a newer one closes the oldest.
    sockets_per_patient: int = 3
    #: Sockets one signed-in team member may hold open at once; a newer one closes the oldest.
    sockets_per_user: int = 8
    #: Redis connections a web process keeps for pages, and as many again for sockets: sockets
    #: can never take the connections pages need. Past them, a request waits briefly for one.
    redis_connections: int = 32
    #: Mark cookies Secure: on whenever the site is served over TLS.
    secure_cookies: bool = False
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if not self.celery_broker_url:
            object.__setattr__(self, "celery_broker_url", celery_broker_from_redis(self.redis_url))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings; raises SettingsError naming the first bad variable."""
        env = os.environ if env is None else env
        redis_url = env.get("REDIS_URL", "")
        if not redis_url:
            raise SettingsError("REDIS_URL is not set (vidclinic dev starts an embedded Redis)")
        secret_key = env.get("VIDCLINIC_SECRET_KEY", "")
        if len(secret_key) < 16:
            raise SettingsError("VIDCLINIC_SECRET_KEY must be set to at least 16 random characters")
        try:
            ice_servers = tuple(json.loads(env.get("VIDCLINIC_ICE_SERVERS") or "[]"))
        except json.JSONDecodeError as exc:
            raise SettingsError(f"VIDCLINIC_ICE_SERVERS is not valid JSON: {exc}") from None
        addresses = tuple(
            a.strip() for a in env.get("VIDCLINIC_MEDIA_ADDRESSES", "").split(",") if a.strip()
        )
        return cls(
            redis_url=redis_url,
            database_url=env.get("DATABASE_URL") or "sqlite:///var/vidclinic.sqlite3",
            secret_key=secret_key,
            celery_broker_url=env.get("VIDCLINIC_CELERY_BROKER_URL", ""),
            space_ttl=_int(env, "VIDCLINIC_SPACE_TTL", 4 * 3600, minimum=60),
            patient_grace=_int(env, "VIDCLINIC_PATIENT_GRACE", 120),
            housekeeping_interval=_int(env, "VIDCLINIC_HOUSEKEEPING_INTERVAL", 15),
            media_capacity=_int(env, "VIDCLINIC_MEDIA_CAPACITY", 60),
            media_node_id=env.get("VIDCLINIC_MEDIA_NODE_ID", ""),
            media_addresses=addresses,
            media_heartbeat=_int(env, "VIDCLINIC_MEDIA_HEARTBEAT", 2),
            ice_servers=ice_servers,
            entry_rate_per_minute=_int(env, "VIDCLINIC_ENTRY_RATE", 10),
            clinic_entry_rate_per_minute=_int(env, "VIDCLINIC_CLINIC_ENTRY_RATE", 120),
            sign_in_attempts=_int(env, "VIDCLINIC_SIGN_IN_ATTEMPTS", 10),
            session_hours=_int(env, "VIDCLINIC_SESSION_HOURS", 12),
            sockets_per_patient=_int(env, "VIDCLINIC_SOCKETS_PER_PATIENT", 3),
            sockets_per_user=_int(env, "VIDCLINIC_SOCKETS_PER_USER", 8),
            redis_connections=_int(env, "VIDCLINIC_REDIS_CONNECTIONS", 32),
            proxy_hops=_int(env, "VIDCLINIC_PROXY_HOPS", 0, minimum=0),
            secure_cookies=_bool(env, "VIDCLINIC_SECURE_COOKIES", False),
            log_level=env.get("VIDCLINIC_LOG_LEVEL", "INFO").upper(),
        )
