"""Hosts on a private network, made by a test: network namespaces on a bridge of their own.

Each host is a network namespace with one interface (a veth pair whose other end is on the
bridge) and one address on the test's subnet; the root namespace, where the test, Redis and
Chromium run, has the bridge's address and reaches every host. Cutting a host takes its cable
out (the bridge side of its veth goes down): its processes go on, and every packet they send or
are sent is lost, as when a machine drops off the network. Needs root (`ip netns`, veth).
"""

from __future__ import annotations

import contextlib
import random
import secrets
import subprocess
from dataclasses import dataclass, field


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass(frozen=True)
class Host:
    """A network namespace on the test's bridge."""

    name: str
    namespace: str
    address: str
    #: The bridge side of its veth pair: down is a cable pulled out.
    cable: str

    @property
    def wrapper(self) -> list[str]:
        """What runs a command on this host."""
        return ["ip", "netns", "exec", self.namespace]


@dataclass
class Network:
    """A bridge with the root namespace on it, and hosts added by `host()`; `close()` removes
    it all (the hosts' veth pairs go with their namespaces)."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet: str = field(
        default_factory=lambda: f"10.{random.randint(160, 223)}.{random.randint(0, 255)}"
    )
    hosts: dict[str, Host] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"vcb{self.tag}"

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge (Redis and Chromium are reached here)."""
        return f"{self.subnet}.1"

    def open(self) -> Network:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def host(self, name: str) -> Host:
        """A new host on the bridge, with the next free address."""
        index = len(self.hosts) + 2
        namespace = f"vc{self.tag}{name}"
        cable, inside = f"vh{self.tag}{index}", f"vp{self.tag}{index}"
        _ip("netns", "add", namespace)
        host = Host(name, namespace, f"{self.subnet}.{index}", cable)
        self.hosts[name] = host
        _ip("link", "add", cable, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("link", "set", cable, "master", self.bridge, "up")
        _ip("-n", namespace, "link", "set", inside, "name", "eth0")
        _ip("-n", namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("-n", namespace, "route", "add", "default", "via", self.gateway)
        return host

    def cut(self, host: Host) -> None:
        """Take the host off the network (its processes keep running)."""
        _ip("link", "set", host.cable, "down")

    def restore(self, host: Host) -> None:
        _ip("link", "set", host.cable, "up")

    def close(self) -> None:
        for host in self.hosts.values():
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "delete", host.namespace)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "delete", self.bridge)
        self.hosts.clear()
