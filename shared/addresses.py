"""Whether an address or host name stays on this machine."""

from __future__ import annotations

import ipaddress
import socket


def loopback_host(host: str, resolve: bool = True) -> bool:
    """True when `host` is a loopback address, or a name whose every address is one.

    An empty host or 0.0.0.0 / :: (every interface) is not loopback. Without `resolve`, a name
    other than `localhost` is not looked up and counts as not loopback.
    """
    host = host.strip("[]")
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        pass
    if host.lower() == "localhost":
        return True
    if not resolve:
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {str(info[4][0]).split("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)
