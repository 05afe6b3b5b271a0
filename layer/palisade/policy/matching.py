"""Pattern and address helpers shared by the policy rules (and the hook).

Everything here is pure: no I/O, no global state, safe to call from an audit hook.
"""

from __future__ import annotations

import ipaddress
import re

_IPV4_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_REGEX_META = frozenset(".^$*+?{}[]|()")
_NAME_ENDINGS = frozenset("ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ-_")


def _legacy_ipv4(text: str) -> int | None:
    """Parse the forms ``inet_aton`` accepts (``127.1``, ``0x7f000001``, octal)."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_IPV4_PART.match(p) for p in parts):
        return None
    values = []
    for part in parts:
        if part[:2] in ("0x", "0X"):
            values.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part[0] == "0":
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 255 for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = 0
    for v in head:
        number = number << 8 | v
    return number << (8 * (4 - len(head))) | last


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def canonical_ip(text: object) -> str | None:
    """The canonical spelling of an IP address, or None when ``text`` is not one.

    IPv4 legacy forms (``2852039166``, ``0xa9fea9fe``, ``169.254.43518``,
    ``0251.0376.0251.0376``) become dotted quads; IPv6 is compressed and lower case,
    without brackets or ``%scope``; an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``)
    becomes the IPv4 address it maps to.
    """
    address = parse_ip(text)
    return None if address is None else str(address)


def parse_ip(text: object) -> IPAddress | None:
    """Like :func:`canonical_ip`, but the address object (or None)."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if not isinstance(text, str) or not text:
        return None
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.partition("%")[0]
    if host.endswith(".") and ":" not in host:
        host = host[:-1]
    if not host or host[-1] in _NAME_ENDINGS:
        # No address spelling ends in g-z: a name, decided without parsing.
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        number = _legacy_ipv4(host) if ":" not in host else None
        if number is None:
            return None
        return ipaddress.IPv4Address(number)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (NAT64 ``64:ff9b::/96``, or
    IPv4-compatible ``::a.b.c.d``), for checks that must see through them."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address in _NAT64 or (int(address) >> 32 == 0 and int(address) > 0xFFFF):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def split_hostport(target: str) -> tuple[str, int | None]:
    """Split ``host:port``, ``[v6]:port`` or a bare host (port None when absent)."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif target.count(":") == 1:
        host, _, port = target.partition(":")
    else:
        # A bare IPv6 address, or "v6:port" with the port after the last colon
        # when the rest is a valid address.
        head, _, tail = target.rpartition(":")
        if head and tail.isdigit() and canonical_ip(head) is not None:
            host, port = head, tail
        else:
            host, port = target, ""
    return host, int(port) if port.isdigit() else None


def normal_name(name: str) -> str:
    """A DNS name as compared: lower case, without the trailing dot."""
    return name.strip().rstrip(".").lower()


def name_matches(pattern: str, name: str) -> bool:
    """``pattern`` (already normalised) is a name or ``*.suffix``; ``*.`` needs at
    least one more label, so ``*.example.com`` does not match ``example.com``."""
    if pattern.startswith("*."):
        return name.endswith(pattern[1:]) and len(name) > len(pattern) - 1
    return name == pattern


def _segment_regex(segment: str) -> str:
    out = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if segment.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def path_glob_regex(pattern: str, literal_prefix: str = "") -> re.Pattern[str]:
    """Compile an absolute path glob: ``*`` and ``?`` stay within one segment,
    a ``**`` segment matches zero or more segments, ``**`` inside a segment
    matches across segments. ``literal_prefix`` is prepended without globbing."""
    parts = []
    segments = pattern.split("/")
    if segments and segments[0] == "":
        segments = segments[1:]
    elif segments:
        # Relative remainder after a literal prefix: the first segment glues on.
        parts.append(_segment_regex(segments[0]))
        segments = segments[1:]
    for segment in segments:
        if segment == "**":
            parts.append("(?:/.*)?")
        else:
            parts.append("/" + _segment_regex(segment))
    return re.compile(re.escape(literal_prefix) + "".join(parts), re.DOTALL)


def word_glob_regex(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """Compile an fnmatch-style glob where ``*`` matches anything (``/`` and ``:``
    included) and ``?`` one character; other characters are literal."""
    out = []
    for char in pattern:
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def is_literal_glob(pattern: str) -> bool:
    """True when a glob pattern can match exactly one string."""
    return "*" not in pattern and "?" not in pattern


def is_literal_regex(pattern: str) -> bool:
    """True when a regular expression matches exactly one string: no unescaped
    metacharacter, and escapes only of punctuation (``a\\.txt`` is literal)."""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if i + 1 >= len(pattern) or pattern[i + 1].isalnum():
                return False
            i += 2
            continue
        if char in _REGEX_META:
            return False
        i += 1
    return True
