"""TURN credentials: the TURN REST API scheme coturn checks, per person, expiring, and saying
nothing about whom they belong to."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from shared.config import Settings
from shared.protocol import IceServers, decode
from shared.turn import TurnCredential, ice_servers, rest_credential, turn_user

SECRET_KEY = "app-secret-key-0123456789"
TURN_SECRET = "turn-shared-secret-0123456789"
STUN = {"urls": "stun:stun.example.org:3478"}


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "redis_url": "redis://127.0.0.1:6400/0",
        "database_url": "sqlite://",
        "secret_key": SECRET_KEY,
        "ice_servers": (STUN,),
        "turn_urls": ("turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:443"),
        "turn_secret": TURN_SECRET,
        "turn_ttl": 3600,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def test_the_password_is_coturns_hmac_of_the_username() -> None:
    # What coturn's documentation computes with
    # `echo -n $username | openssl dgst -binary -sha1 -hmac $secret | openssl base64`.
    turn = rest_credential("north-and-south-secret", "someone", 1_700_000_000)
    assert turn == TurnCredential(
        "1700000000:someone", "3iccUh5BsH3rAGJlWVkE/IO5q2A=", 1_700_000_000
    )


def test_the_username_is_the_expiry_then_an_opaque_user() -> None:
    servers = ice_servers(_settings(), "u42", now=1_700_000_000.9).servers
    turn = servers[-1]
    expiry, user = turn["username"].split(":")
    assert int(expiry) == 1_700_000_000 + 3600
    assert user == turn_user(SECRET_KEY, "u42")
    mac = hmac.new(TURN_SECRET.encode(), turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(mac).decode()


def test_the_expiry_follows_the_ttl_and_the_time_asked() -> None:
    early = ice_servers(_settings(turn_ttl=600), "p1", now=1_000_000).servers[-1]
    later = ice_servers(_settings(turn_ttl=600), "p1", now=1_000_300).servers[-1]
    assert early["username"].startswith("1000600:")
    assert later["username"].startswith("1000900:")
    assert early["credential"] != later["credential"]


@pytest.mark.parametrize("participant", ["u1", "u2", "p0a1b2c3d4e5f", "g0a1b2c3d4e5f"])
def test_the_user_part_is_opaque_and_stable(participant: str) -> None:
    user = turn_user(SECRET_KEY, participant)
    assert user == turn_user(SECRET_KEY, participant)
    assert participant not in user and participant[1:] not in user
    assert len(user) == 16 and user.isalnum()
    # Keyed with the app's secret: the TURN server's operator cannot try every staff id.
    assert user != turn_user("another-app-secret-key", participant)


def test_each_person_gets_their_own_credential() -> None:
    settings = _settings()
    people = ["u1", "u2", "p0a1b2c3d4e5f", "g0a1b2c3d4e5f"]
    turns = [ice_servers(settings, p, now=1_000_000).servers[-1] for p in people]
    assert len({t["username"] for t in turns}) == len(people)
    assert len({t["credential"] for t in turns}) == len(people)


def test_stun_servers_come_first_and_the_secret_never_leaves() -> None:
    message = ice_servers(_settings(), "u7", now=1_000_000)
    assert message.servers[0] == STUN
    assert message.servers[1]["urls"] == [
        "turn:turn.example.org:3478?transport=udp",
        "turns:turn.example.org:443",
    ]
    assert message.ttl == 3600
    encoded = message.encode()
    assert TURN_SECRET not in encoded and SECRET_KEY not in encoded
    assert decode(encoded, IceServers) == message


def test_without_turn_only_the_stun_servers_and_nothing_expires() -> None:
    message = ice_servers(_settings(turn_urls=(), turn_secret=""), "u7")
    assert message == IceServers(servers=[STUN], ttl=0)


def test_a_credential_names_its_expiry() -> None:
    with pytest.raises(ValueError, match="expiry"):
        TurnCredential("someone", "x", 1_700_000_000)
