"""Canonical forms of socket addresses, so that one host has one spelling.

IPv4 in any legacy spelling that ``inet_aton`` accepts (``0x7f000001``,
``2130706433``, ``127.1``, ``0177.0.0.1``) becomes dotted quad; IPv6 loses its
``%scope`` and is compressed; IPv4-mapped IPv6 (``::ffff:a.b.c.d``) becomes the
IPv4 address. None of this raises audit events.
"""

from __future__ import annotations

import ipaddress
import socket

_FAMILIES: dict[int, str] = {
    socket.AF_INET: "ipv4",
    socket.AF_INET6: "ipv6",
    socket.AF_UNIX: "unix",
}


def family_name(family: int) -> str:
    """'ipv4', 'ipv6', 'unix' or the number for anything else."""
    return _FAMILIES.get(family, str(int(family)))


def canonical_ip(host: object) -> str | None:
    """The canonical text of an IP literal in any spelling, or None for a name."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str) or not host:
        return None
    text = host.strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(text))
        except (OSError, ValueError):
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def host_port(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 literal."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"
