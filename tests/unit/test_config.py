"""Settings come from the environment in one place and name the variable that is wrong."""

from __future__ import annotations

import pytest

from shared.config import Settings, SettingsError, celery_broker_from_redis

BASE = {"REDIS_URL": "redis://127.0.0.1:6400/0", "VIDCLINIC_SECRET_KEY": "s" * 32}


def test_defaults_and_derived_broker() -> None:
    settings = Settings.from_env(BASE)
    assert settings.celery_broker_url == "redis://127.0.0.1:6400/1"
    assert settings.database_url.startswith("sqlite:///")
    assert settings.media_addresses == ()


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"VIDCLINIC_SECRET_KEY": "s" * 32}, "REDIS_URL"),
        ({"REDIS_URL": "redis://x/0", "VIDCLINIC_SECRET_KEY": "short"}, "VIDCLINIC_SECRET_KEY"),
        ({**BASE, "VIDCLINIC_MEDIA_CAPACITY": "many"}, "VIDCLINIC_MEDIA_CAPACITY"),
        ({**BASE, "VIDCLINIC_MEDIA_CAPACITY": "0"}, "VIDCLINIC_MEDIA_CAPACITY"),
        ({**BASE, "VIDCLINIC_ICE_SERVERS": "[{"}, "VIDCLINIC_ICE_SERVERS"),
        ({**BASE, "VIDCLINIC_SECURE_COOKIES": "maybe"}, "VIDCLINIC_SECURE_COOKIES"),
        ({**BASE, "VIDCLINIC_SOCKETS_PER_PATIENT": "0"}, "VIDCLINIC_SOCKETS_PER_PATIENT"),
        ({**BASE, "VIDCLINIC_SESSION_HOURS": "half"}, "VIDCLINIC_SESSION_HOURS"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        Settings.from_env(env)


def test_lists_are_parsed() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "VIDCLINIC_MEDIA_ADDRESSES": "203.0.113.5, 2001:db8::5",
            "VIDCLINIC_ICE_SERVERS": '[{"urls": "stun:stun.example:3478"}]',
            "VIDCLINIC_TURN_URLS": "turn:turn.example:3478?transport=udp, turns:[2001:db8::3]:443",
            "VIDCLINIC_TURN_SECRET": "t" * 32,
        }
    )
    assert settings.media_addresses == ("203.0.113.5", "2001:db8::5")
    assert settings.ice_servers == ({"urls": "stun:stun.example:3478"},)
    assert settings.turn_urls == ("turn:turn.example:3478?transport=udp", "turns:[2001:db8::3]:443")
    assert settings.turn_ttl == 3600


TURN = {
    **BASE,
    "VIDCLINIC_TURN_URLS": "turn:turn.example.org:3478",
    "VIDCLINIC_TURN_SECRET": "t" * 32,
}


@pytest.mark.parametrize(
    ("env", "says"),
    [
        # A TURN password in VIDCLINIC_ICE_SERVERS would be the same in every page.
        (
            {
                **BASE,
                "VIDCLINIC_ICE_SERVERS": '[{"urls": ["turn:turn.example.org:3478"], '
                '"username": "vidclinic", "credential": "static"}]',
            },
            "VIDCLINIC_TURN_URLS and set VIDCLINIC_TURN_SECRET",
        ),
        ({**BASE, "VIDCLINIC_ICE_SERVERS": '[{"urls": "turns:t.example.org"}]'}, "TURN server"),
        (
            {
                **BASE,
                "VIDCLINIC_ICE_SERVERS": '[{"urls": "stun:s.example.org", "credential": "x"}]',
            },
            "password",
        ),
        ({**BASE, "VIDCLINIC_ICE_SERVERS": '{"urls": "stun:s.example.org"}'}, "JSON list"),
        ({**BASE, "VIDCLINIC_ICE_SERVERS": '[{"url": "stun:s.example.org"}]'}, "needs urls"),
        ({**BASE, "VIDCLINIC_ICE_SERVERS": '[{"urls": "http://s.example.org"}]'}, "stun:"),
        ({**BASE, "VIDCLINIC_TURN_URLS": "turn:turn.example.org"}, "VIDCLINIC_TURN_SECRET must"),
        ({**TURN, "VIDCLINIC_TURN_SECRET": "short"}, "VIDCLINIC_TURN_SECRET must"),
        ({**BASE, "VIDCLINIC_TURN_SECRET": "t" * 32}, "VIDCLINIC_TURN_URLS is empty"),
        ({**TURN, "VIDCLINIC_TURN_URLS": "stun:turn.example.org"}, "not a TURN URL"),
        ({**TURN, "VIDCLINIC_TURN_URLS": "turn:turn.example.org?transport=sctp"}, "not a TURN URL"),
        ({**TURN, "VIDCLINIC_TURN_TTL": "30"}, "VIDCLINIC_TURN_TTL must be at least 60"),
    ],
)
def test_turn_settings_refuse_static_passwords_and_say_what_to_set(
    env: dict[str, str], says: str
) -> None:
    with pytest.raises(SettingsError, match=says):
        Settings.from_env(env)


def test_stun_only_servers_still_work() -> None:
    env = {
        **BASE,
        "VIDCLINIC_ICE_SERVERS": '[{"urls": ["stun:a.example.org", "stuns:b.example.org"]}]',
    }
    settings = Settings.from_env(env)
    assert settings.ice_servers == ({"urls": ["stun:a.example.org", "stuns:b.example.org"]},)
    assert settings.turn_urls == () and settings.turn_secret == ""


def test_broker_uses_the_next_database_index() -> None:
    assert celery_broker_from_redis("redis://:pw@host:6379/3") == "redis://:pw@host:6379/4"
    assert celery_broker_from_redis("redis://host:6379") == "redis://host:6379/1"
