"""Limits count clients by the network they control."""

from __future__ import annotations

import pytest

from shared.throttle import client_network


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:5:6::1", "2001:db8:5:6::/64"),
        ("2001:db8:5:6:ffff:ffff:ffff:fffe", "2001:db8:5:6::/64"),
        ("2001:DB8:5:7::1", "2001:db8:5:7::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("-", "-"),
    ],
)
def test_clients_are_counted_by_the_network_they_control(address: str, network: str) -> None:
    assert client_network(address) == network
