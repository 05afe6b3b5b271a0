"""The demo's private network: a network + mount namespace with its own names.

Outside the namespace the demo only re-executes itself under ``unshare --net
--mount``. Inside, ``enter`` brings ``lo`` up, gives it 169.254.169.254/32 (so the
metadata stand-in exists only there), and bind-mounts a generated hosts file and a
resolv.conf (pointing at the DNS stand-in) over the system ones. Mount propagation is
private, so nothing of this is visible outside, and no interface other than ``lo``
exists, so nothing leaves.

Limitation: this needs ``unshare`` and the right to create namespaces (root, or
unprivileged user namespaces with ``--map-root-user``). Without them the demo says
so and runs only what stays on 127.0.0.0/8.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

METADATA_IP = "169.254.169.254"
DNS_IP = "127.0.0.53"
PARTNER_IP = "127.0.0.2"
ATTACKER_IP = "127.0.0.66"

PARTNER_NAMES = ["api.partner.example", "hooks.partner.example"]
ATTACKER_NAMES = ["exfil.attacker.example", "telemetry.attacker.example"]

# Passed to the re-executed runner so it knows it is inside.
INSIDE_FLAG = "--inside-namespace"


@dataclass
class Network:
    """Where the stand-ins live and how functions reach them."""

    isolated: bool
    partner_ip: str = PARTNER_IP
    attacker_ip: str = ATTACKER_IP
    dns_ip: str = DNS_IP
    metadata_ip: str | None = METADATA_IP
    https_port: int = 443
    notes: list[str] = field(default_factory=list)

    def url(self, name: str, path: str = "") -> str:
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://{name}{port}{path}"


def unshare_command(argv: Sequence[str]) -> list[str] | None:
    """The command re-running the demo in a new namespace (None: impossible)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    cmd = [unshare, "--net", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        cmd.append("--map-root-user")
    return [*cmd, sys.executable, "-m", "palisade_cli.main", "demo", INSIDE_FLAG, *argv]


def can_unshare() -> tuple[bool, str]:
    """Try a no-op namespace; return (works, reason when it does not)."""
    cmd = unshare_command([])
    if cmd is None:
        return False, "the unshare command is not installed (util-linux)"
    probe = [*cmd[: cmd.index(sys.executable)], "true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{' '.join(probe)} failed: {exc}"
    if done.returncode != 0:
        return False, f"{' '.join(probe)} failed: {done.stderr.strip()}"
    return True, ""


def hosts_text() -> str:
    """The namespace's /etc/hosts: loopback plus the outside names the demo uses."""
    lines = [
        "127.0.0.1 localhost",
        "::1 localhost ip6-localhost ip6-loopback",
        f"{PARTNER_IP} {' '.join(PARTNER_NAMES)}",
        f"{ATTACKER_IP} {' '.join(ATTACKER_NAMES)}",
    ]
    return "\n".join(lines) + "\n"


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(
            f"expected {' '.join(cmd)!r} to succeed inside the demo namespace, "
            f"it exited {done.returncode}: {done.stderr.strip()}"
        )


def enter(folder: Path) -> Network:
    """Configure the namespace the process is already in (loopback, names, resolver).

    Raises:
        RuntimeError: a configuration step failed (the message names it).
    """
    ip = shutil.which("ip")
    if ip is None:
        raise RuntimeError(
            "expected the ip command (iproute2) to configure the demo namespace; "
            "install iproute2"
        )
    _run([ip, "link", "set", "lo", "up"])
    _run([ip, "addr", "add", f"{METADATA_IP}/32", "dev", "lo"])
    links = subprocess.run([ip, "-o", "link"], capture_output=True, text=True).stdout
    others = [
        ln.split(":")[1].strip() for ln in links.splitlines() if ": lo:" not in ln
    ]
    if others:
        raise RuntimeError(f"expected only lo in the demo namespace, found {others}")
    folder.mkdir(parents=True, exist_ok=True)
    hosts = folder / "hosts"
    resolv = folder / "resolv.conf"
    hosts.write_text(hosts_text())
    resolv.write_text(f"nameserver {DNS_IP}\noptions timeout:1 attempts:1\n")
    _run(["mount", "--bind", str(hosts), "/etc/hosts"])
    _run(["mount", "--bind", str(resolv), "/etc/resolv.conf"])
    return Network(isolated=True)


def loopback_only(reason: str) -> Network:
    """The fallback network: loopback addresses only, no names, no metadata address."""
    return Network(
        isolated=False,
        partner_ip="127.0.0.1",
        attacker_ip="127.0.0.1",
        dns_ip="127.0.0.1",
        metadata_ip=None,
        https_port=0,
        notes=[
            f"no network namespace ({reason}): the metadata, DNS and outside-name "
            "scenarios were not run; everything else stayed on 127.0.0.0/8"
        ],
    )
