"""A real coturn on loopback, started the way infra/ starts it: infra/coturn/start.sh with
infra/coturn/turnserver.conf, only the addresses and ports made the test's own; and a TURN
client (aioice's, which aiortc uses) to allocate relays on it."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from aioice import stun
from aioice.turn import TurnTransport, create_turn_endpoint
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.redis_server import free_port
from tests.support.stack import Process, wait_until

INFRA = Path(__file__).resolve().parents[2] / "infra" / "coturn"
REALM = "turn.vidclinic.test"
#: The name in the test's TLS certificate, and in its turns: URL.
TLS_NAME = "localhost"


def turnserver() -> str | None:
    """Debian's coturn binary, if installed."""
    return shutil.which("turnserver")


@dataclass
class Coturn:
    """Handles on a running coturn."""

    port: int
    tls_port: int
    secret: str
    process: Process
    #: The CA to trust for turns: (the server's own self-signed certificate).
    certificate: Path

    def log(self) -> str:
        return self.process.log.read_text(errors="replace")


def _self_signed(root: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TLS_NAME)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(TLS_NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = root / "turn-cert.pem", root / "turn-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def stun_answers(port: int) -> bool:
    """True when a STUN Binding request to 127.0.0.1:`port` gets its response."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.3)
        probe.sendto(bytes(request), ("127.0.0.1", port))
        try:
            data = probe.recv(2048)
        except OSError:
            return False
    return stun.parse_message(data).transaction_id == request.transaction_id


@contextmanager
def running_coturn(
    root: Path,
    secret: str,
    media_peers: str,
    port: int = 0,
    tls_port: int = 0,
    previous_secret: str = "",
) -> Iterator[Coturn]:
    """coturn on 127.0.0.1 with the shipped configuration and TLS; stopped on leaving.

    Loopback peers are refused by coturn unless allowed: the test's media node is on 127.0.0.1,
    so they are, and TURN_MEDIA_PEERS then refuses every address but `media_peers`.
    """
    binary = turnserver()
    assert binary is not None
    root.mkdir(parents=True, exist_ok=True)
    cert, key = _self_signed(root)
    port, tls_port = port or free_port(), tls_port or free_port()
    relays = random.randrange(20000, 30000, 100)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "VIDCLINIC_TURN_SECRET": secret,
        "TURN_REALM": REALM,
        "TURN_MEDIA_PEERS": media_peers,
        "TURN_TLS_CERT": str(cert),
        "TURN_TLS_KEY": str(key),
        "TURN_CONFIG": str(INFRA / "turnserver.conf"),
        "TURN_RUN_DIR": str(root),
        "TURN_PREVIOUS_SECRET": previous_secret,
    }
    args = [
        "sh",
        str(INFRA / "start.sh"),
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        f"--tls-listening-port={tls_port}",
        f"--min-port={relays}",
        f"--max-port={relays + 99}",
        "--allow-loopback-peers",
    ]
    log = root / "coturn.log"
    popen = subprocess.Popen(
        args, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )
    process = Process("coturn", popen, log)
    try:
        wait_until(lambda: stun_answers(port), 20, "coturn", process)
        yield Coturn(port, tls_port, secret, process, cert)
    finally:
        process.stop(signal.SIGTERM)


class Received(asyncio.DatagramProtocol):
    """What arrives through a relay, and the errors its sends met (403 for a refused peer)."""

    def __init__(self) -> None:
        self.data: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.errors: asyncio.Queue[Exception] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.data.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.errors.put_nowait(exc)


class Echo(asyncio.DatagramProtocol):
    """Stands in for a media node: answers every datagram with `echo:` and the datagram."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"echo:" + data, addr)


async def allocate(
    coturn: Coturn, username: str, password: str, transport: str = "udp"
) -> tuple[TurnTransport, Received]:
    """A TURN Allocate with these credentials, over UDP, TCP or TLS ("tls");
    raises stun.TransactionFailed with the server's error (401, 486) when refused."""
    context: ssl.SSLContext | None = None
    port = coturn.port
    if transport == "tls":
        context = ssl.create_default_context(cafile=str(coturn.certificate))
        port = coturn.tls_port
    return await create_turn_endpoint(
        Received,
        (TLS_NAME if context else "127.0.0.1", port),
        username,
        password,
        ssl=context,
        transport="tcp" if transport in ("tcp", "tls") else "udp",
    )


def error_code(refused: stun.TransactionFailed) -> int:
    """The STUN error code of a refused transaction (401 Unauthorized, 403 Forbidden, …)."""
    code: int = refused.response.attributes["ERROR-CODE"][0]
    return code
