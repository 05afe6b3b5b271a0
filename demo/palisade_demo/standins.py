"""Stand-in servers for the outside world, on loopback inside the demo's namespace.

Each one records what it received, so the report can say whether an attack's effect
happened (the exfiltration server got the secret, the metadata address was asked, a
name carrying data was looked up) from what the server saw, not from what the
runner expected.

- ``HttpsStandIn``: a TLS HTTP server for one or more host names (the partner API,
  the attacker's collection server), certificate signed by a CA made for the run.
- ``MetadataStandIn``: plain HTTP on 169.254.169.254:80 (an address that exists only
  inside the namespace), answering like the instance metadata service.
- ``DnsStandIn``: a UDP DNS server on loopback that records every queried name and
  answers NXDOMAIN (every legitimate name is in the namespace's hosts file).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class Seen:
    """One request a stand-in received."""

    ts: float
    server: str
    host: str
    method: str
    path: str
    body: str
    peer: str


@dataclass
class Observations:
    """Everything the stand-ins saw, in arrival order (thread safe)."""

    requests: list[Seen] = field(default_factory=list)
    dns_names: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_request(self, seen: Seen) -> None:
        with self.lock:
            self.requests.append(seen)

    def add_name(self, name: str) -> None:
        with self.lock:
            self.dns_names.append((time.time(), name))

    def requests_since(self, since: float, server: str | None = None) -> list[Seen]:
        with self.lock:
            return [
                r
                for r in self.requests
                if r.ts >= since and (server is None or r.server == server)
            ]

    def names_since(self, since: float) -> list[str]:
        with self.lock:
            return [n for ts, n in self.dns_names if ts >= since]


def make_certificates(folder: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """Create a CA and one server certificate for ``names``.

    Returns:
        (ca_pem, cert_pem, key_pem) paths; the CA file is what clients trust.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Palisade demo CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = folder / "ca.pem"
    cert_pem = folder / "server.pem"
    key_pem = folder / "server.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_pem.chmod(0o600)
    return ca_pem, cert_pem, key_pem


class _Recorder(BaseHTTPRequestHandler):
    """Records every request on the server's Observations and answers with JSON."""

    server: _RecordingServer
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
        body = self.rfile.read(length).decode(errors="replace") if length else ""
        host = (self.headers.get("Host") or "").split(":")[0]
        self.server.observations.add_request(
            Seen(
                ts=time.time(),
                server=self.server.label,
                host=host,
                method=self.command,
                path=self.path,
                body=body,
                peer=self.client_address[0],
            )
        )
        status, payload = self.server.answer(host, self.command, self.path)
        data = payload.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _handle
    do_POST = _handle
    do_PUT = _handle

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s: " + format, self.server.label, *args)


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True
    label: str
    observations: Observations

    def answer(self, host: str, method: str, path: str) -> tuple[int, str]:
        if self.label == "metadata":
            if path.rstrip("/").endswith("security-credentials"):
                return 200, "demo-function-role"
            return 200, json.dumps({"Code": "Success", "AccessKeyId": "ASIADEMO"})
        if path.startswith("/v1/shipments"):
            tracking = f"TRK{int(time.time() * 1000) % 10_000_000:07d}"
            return 200, json.dumps({"accepted": True, "tracking": tracking})
        return 200, json.dumps({"ok": True})


class _ServerThread:
    """Runs one server on a daemon thread; ``stop`` shuts it down and joins."""

    def __init__(self, server: _RecordingServer) -> None:
        self.server = server
        self.thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"standin-{server.label}",
            daemon=True,
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _bind(
    label: str, ip: str, port: int, observations: Observations
) -> _RecordingServer:
    server = _RecordingServer((ip, port), _Recorder)
    server.label = label
    server.observations = observations
    return server


class HttpsStandIn(_ServerThread):
    """A TLS server answering for the host names in its certificate."""

    def __init__(
        self,
        label: str,
        ip: str,
        port: int,
        cert: Path,
        key: Path,
        observations: Observations,
    ) -> None:
        server = _bind(label, ip, port, observations)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        super().__init__(server)


class MetadataStandIn(_ServerThread):
    """Plain HTTP answering like the instance metadata service."""

    def __init__(self, ip: str, port: int, observations: Observations) -> None:
        super().__init__(_bind("metadata", ip, port, observations))


class DnsStandIn:
    """UDP DNS server that records each question and answers NXDOMAIN."""

    def __init__(self, ip: str, port: int, observations: Observations) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.sock.settimeout(0.2)
        self.observations = observations
        self.address = self.sock.getsockname()
        self._stop = threading.Event()
        self.thread = threading.Thread(
            target=self._serve, name="standin-dns", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                name, end = parse_question(data)
            except ValueError as exc:
                logger.debug("dns stand-in: bad query from %s: %s", peer, exc)
                continue
            self.observations.add_name(name)
            # Response: same id, QR + RD + RA + NXDOMAIN, the question echoed back.
            header = data[:2] + struct.pack(">HHHHH", 0x8183, 1, 0, 0, 0)
            self.sock.sendto(header + data[12:end], peer)


def parse_question(packet: bytes) -> tuple[str, int]:
    """Return (name, offset after the question) of a DNS query packet.

    Raises:
        ValueError: the packet is not a query with one well-formed question.
    """
    if len(packet) < 17:
        raise ValueError(
            f"expected a DNS query of at least 17 bytes, got {len(packet)}"
        )
    labels = []
    pos = 12
    for _ in range(128):
        length = packet[pos]
        pos += 1
        if length == 0:
            break
        if length > 63 or pos + length > len(packet):
            raise ValueError(f"bad label length {length} at offset {pos - 1}")
        labels.append(packet[pos : pos + length].decode("ascii", errors="replace"))
        pos += length
    else:
        raise ValueError("more than 128 labels")
    return ".".join(labels).lower(), pos + 4


def is_loopback_or_local(ip: str) -> bool:
    """True for the addresses the demo may bind (loopback or link-local inside ns)."""
    addr = ipaddress.ip_address(ip)
    return addr.is_loopback or addr.is_link_local
