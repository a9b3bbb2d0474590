"""One settings object for every process, filled from the environment in one place."""

from __future__ import annotations

import ipaddress
import json
import os
import re
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


def _float(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, not {raw!r}") from None
    if not value >= minimum:
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


#: Where a client must not point the media node: loopback, link-local, private, unique-local,
#: unspecified and multicast ranges. `vidclinic dev` and the tests, all on loopback, allow all.
DEFAULT_DENIED_CANDIDATES = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (the first by default)."""
    raw = env.get(name, "").strip().lower() or choices[0]
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, not {raw!r}")
    return raw


def _json_template(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip() or default
    try:
        json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{name} is not valid JSON: {exc}") from None
    return raw


def _networks(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated CIDR networks; `none` for none."""
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    if raw.lower() == "none":
        return ()
    networks = tuple(item.strip() for item in raw.split(",") if item.strip())
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise SettingsError(f"{name}: {network!r} is not a network like 10.0.0.0/8") from None
    return networks


#: A TURN server's URI as browsers take it (RFC 7065): `turn:` or `turns:` (TLS), a host name or
#: address, an optional port and an optional transport.
TURN_URL = re.compile(
    r"turns?:(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?(?:\?transport=(?:udp|tcp))?"
)
STUN_SCHEMES = ("stun:", "stuns:")
TURN_SCHEMES = ("turn:", "turns:")


def _ice_servers(env: Mapping[str, str], name: str) -> tuple[dict[str, object], ...]:
    """STUN servers as RTCPeerConnection takes them; TURN servers and passwords are refused.

    A password here would be the same in every page, readable by anyone who opens the clinic's
    link: TURN goes in VIDCLINIC_TURN_URLS, whose credentials are per person and expire.
    """
    try:
        servers = json.loads(env.get(name) or "[]")
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{name} is not valid JSON: {exc}") from None
    example = '[{"urls": "stun:stun.example.org:3478"}]'
    if not isinstance(servers, list) or not all(isinstance(s, dict) for s in servers):
        raise SettingsError(f"{name} must be a JSON list of servers like {example}")
    for server in servers:
        urls = server.get("urls")
        urls = [urls] if isinstance(urls, str) else urls
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            raise SettingsError(f"{name}: every server needs urls, as in {example}")
        if (
            "credential" in server
            or "username" in server
            or any(u.lower().startswith(TURN_SCHEMES) for u in urls)
        ):
            raise SettingsError(
                f"{name} lists a TURN server or a password, which every page would show to "
                "anyone: put TURN servers in VIDCLINIC_TURN_URLS and set VIDCLINIC_TURN_SECRET "
                "(coturn's static-auth-secret), so each page gets its own expiring credential"
            )
        if not all(u.lower().startswith(STUN_SCHEMES) for u in urls):
            raise SettingsError(f"{name}: {urls!r} are not stun: or stuns: URLs")
    return tuple(servers)


def _turn_urls(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated turn:/turns: URLs."""
    urls = tuple(u.strip() for u in env.get(name, "").split(",") if u.strip())
    for url in urls:
        if not TURN_URL.fullmatch(url):
            raise SettingsError(
                f"{name}: {url!r} is not a TURN URL like turn:turn.example.org:3478?transport=udp "
                "or turns:turn.example.org:443?transport=tcp"
            )
    return urls


DEFAULT_SMS_BODY = '{"to": "{to}", "text": "{text}"}'
SMTP_SECURITY = ("starttls", "ssl", "none")
LOG_FORMATS = ("text", "json")


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
    #: Tracks a media node forwards (a subscriber slot carrying a publisher's audio or video)
    #: before allocation passes it over: a six-person call forwards 60, a two-person call 4.
    media_track_capacity: int = 300
    #: Stable id of this media node; random per start when empty.
    media_node_id: str = ""
    #: Addresses the media node gathers ICE host candidates on; empty means the host's own.
    media_addresses: tuple[str, ...] = ()
    #: Seconds between media-node heartbeats (and between beat's reaps of dead nodes); the
    #: registry entry lives keys.NODE_TTL_HEARTBEATS of them, so a dead node's calls move to a
    #: live one within five heartbeats.
    media_heartbeat: float = 0.5
    #: Networks (CIDR) whose addresses a client may not name as ICE candidates: the node never
    #: sends connectivity checks there. Loopback, link-local and private ranges by default.
    media_denied_candidates: tuple[str, ...] = DEFAULT_DENIED_CANDIDATES
    #: STUN servers handed to browsers, as the RTCPeerConnection `iceServers` list (no TURN:
    #: a TURN password here would be the same in every page).
    ice_servers: tuple[dict[str, object], ...] = ()
    #: TURN servers (turn:/turns: URLs) handed to browsers with a credential of their own.
    turn_urls: tuple[str, ...] = ()
    #: The TURN REST API secret shared with coturn (`static-auth-secret`); never sent anywhere.
    turn_secret: str = ""
    #: Seconds a browser's TURN credential is valid for new allocations; pages ask for fresh
    #: ones halfway through, and relayed calls outlive it.
    turn_ttl: int = 3600
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
    #: SMTP server for email (invitations, password resets, guest links); none: files in outbox.
    smtp_host: str = ""
    smtp_port: int = 587
    #: `starttls`, `ssl` (implicit TLS) or `none`.
    smtp_security: str = "starttls"
    smtp_user: str = ""
    smtp_password: str = ""
    email_from: str = "vidclinic <no-reply@localhost>"
    #: Folder where email and SMS go when no SMTP server or SMS provider is configured.
    outbox: str = "var/outbox"
    #: An SMS provider's HTTPS endpoint; none: texts are written to the outbox.
    sms_webhook_url: str = ""
    #: The Authorization header sent to the SMS provider (`Bearer …`, `Basic …`).
    sms_webhook_auth: str = ""
    #: JSON body template for the SMS provider; `{to}` and `{text}` are filled in.
    sms_webhook_body: str = DEFAULT_SMS_BODY
    #: Seconds one email or SMS attempt may take before it counts as failed (and is retried).
    send_timeout: int = 20
    #: Attempts at one email or SMS before it counts as failed ("Failed: <reason>").
    send_attempts: int = 8
    #: Seconds before the first retry of a failed send; each next one waits twice as long, five
    #: minutes at most.
    send_retry_delay: int = 5
    #: Connections (pages and sockets) one web process serves at once.
    web_connections: int = 10000
    #: `text` or `json` (one JSON object a line) for every process's log.
    log_format: str = "text"
    #: A bearer token every metrics endpoint asks for; none: web's /metrics answers only
    #: loopback connections that came through no proxy, and the metrics ports whoever
    #: reaches their address.
    metrics_token: str = ""
    #: The address a worker's or media node's metrics port binds.
    metrics_address: str = "127.0.0.1"
    #: A worker's metrics port (0: none).
    worker_metrics_port: int = 0
    #: A media node's metrics port (0: none; the node then listens on no TCP port at all).
    media_metrics_port: int = 0
    #: Pre-call checks allowed per client address (an IPv6 client's /64) per minute.
    check_rate_per_minute: int = 10
    #: Pre-call checks running at once on all media nodes together: each holds two peer
    #: connections on a node, so checks take at most twice this many places of the nodes.
    checks_at_once: int = 20
    #: Seconds a pre-call check's call lasts at most, whatever the page does.
    check_seconds: int = 35

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
        ice_servers = _ice_servers(env, "VIDCLINIC_ICE_SERVERS")
        turn_urls = _turn_urls(env, "VIDCLINIC_TURN_URLS")
        turn_secret = env.get("VIDCLINIC_TURN_SECRET", "")
        if turn_urls and len(turn_secret) < 16:
            raise SettingsError(
                "VIDCLINIC_TURN_SECRET must be set to coturn's static-auth-secret (at least 16 "
                "random characters) when VIDCLINIC_TURN_URLS is set"
            )
        if turn_secret and not turn_urls:
            raise SettingsError("VIDCLINIC_TURN_SECRET is set but VIDCLINIC_TURN_URLS is empty")
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
            media_track_capacity=_int(env, "VIDCLINIC_MEDIA_TRACK_CAPACITY", 300),
            media_heartbeat=_float(env, "VIDCLINIC_MEDIA_HEARTBEAT", 0.5, minimum=0.1),
            media_denied_candidates=_networks(
                env, "VIDCLINIC_MEDIA_DENIED_CANDIDATES", DEFAULT_DENIED_CANDIDATES
            ),
            ice_servers=ice_servers,
            turn_urls=turn_urls,
            turn_secret=turn_secret,
            turn_ttl=_int(env, "VIDCLINIC_TURN_TTL", 3600, minimum=60),
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
            smtp_host=env.get("VIDCLINIC_SMTP_HOST", ""),
            smtp_port=_int(env, "VIDCLINIC_SMTP_PORT", 587),
            smtp_security=_choice(env, "VIDCLINIC_SMTP_SECURITY", SMTP_SECURITY),
            smtp_user=env.get("VIDCLINIC_SMTP_USER", ""),
            smtp_password=env.get("VIDCLINIC_SMTP_PASSWORD", ""),
            email_from=env.get("VIDCLINIC_EMAIL_FROM") or "vidclinic <no-reply@localhost>",
            outbox=env.get("VIDCLINIC_OUTBOX") or "var/outbox",
            sms_webhook_url=env.get("VIDCLINIC_SMS_WEBHOOK_URL", ""),
            sms_webhook_auth=env.get("VIDCLINIC_SMS_WEBHOOK_AUTH", ""),
            sms_webhook_body=_json_template(env, "VIDCLINIC_SMS_WEBHOOK_BODY", DEFAULT_SMS_BODY),
            send_timeout=_int(env, "VIDCLINIC_SEND_TIMEOUT", 20),
            send_attempts=_int(env, "VIDCLINIC_SEND_ATTEMPTS", 8),
            send_retry_delay=_int(env, "VIDCLINIC_SEND_RETRY_DELAY", 5),
            web_connections=_int(env, "VIDCLINIC_WEB_CONNECTIONS", 10000),
            log_format=_choice(env, "VIDCLINIC_LOG_FORMAT", LOG_FORMATS),
            metrics_token=env.get("VIDCLINIC_METRICS_TOKEN", ""),
            metrics_address=env.get("VIDCLINIC_METRICS_ADDRESS") or "127.0.0.1",
            worker_metrics_port=_int(env, "VIDCLINIC_WORKER_METRICS_PORT", 0, minimum=0),
            media_metrics_port=_int(env, "VIDCLINIC_MEDIA_METRICS_PORT", 0, minimum=0),
            check_rate_per_minute=_int(env, "VIDCLINIC_CHECK_RATE", 10),
            checks_at_once=_int(env, "VIDCLINIC_CHECKS_AT_ONCE", 20),
            check_seconds=_int(env, "VIDCLINIC_CHECK_SECONDS", 35, minimum=5),
        )
