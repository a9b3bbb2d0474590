"""Which addresses the node offers to browsers as ICE host candidates."""

from __future__ import annotations

import aioice.ice


def use_host_addresses(addresses: tuple[str, ...]) -> None:
    """Gather host candidates on exactly these addresses.

    aioice skips 127.0.0.1 on its own, so a node on loopback (development, tests) would offer no
    candidate; in production this pins the public addresses of a multi-homed host.
    """
    if not addresses:
        return
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses
