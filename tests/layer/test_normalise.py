"""Target normalisation: paths and addresses get one spelling before decisions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from palisade import addresses, names, paths


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("::ffff:169.254.169.254", "169.254.169.254"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("[fe80::1%eth0]", "fe80::1"),
        (b"10.0.0.1", "10.0.0.1"),
        ("example.com", None),
        ("", None),
    ],
)
def test_canonical_ip(spelling: object, canonical: str | None) -> None:
    """Every legacy IPv4 spelling, IPv4-mapped IPv6 and scoped IPv6 is canonical."""
    assert addresses.canonical_ip(spelling) == canonical


def test_host_port() -> None:
    """IPv6 hosts are bracketed."""
    assert addresses.host_port("::1", 80) == "[::1]:80"
    assert addresses.host_port("a.example", 443) == "a.example:443"


def test_paths(tmp_path: Path) -> None:
    """Relative, doubled, dotted and linked paths become one absolute real path;
    /proc/<own pid> is /proc/self; another pid is recognised."""
    (tmp_path / "d").mkdir()
    os.symlink(tmp_path / "d", tmp_path / "link")
    assert paths.absolute("//etc/./x/../hosts") == "/etc/hosts"
    assert paths.resolve(str(tmp_path / "link" / "f")) == str(
        (tmp_path / "d" / "f").resolve()
    )
    assert paths.resolve(f"/proc/{os.getpid()}/environ") == "/proc/self/environ"
    assert paths.is_own_environ(paths.own_proc("/proc/thread-self/environ"))
    assert paths.other_process("/proc/1/cmdline") == (None if os.getpid() == 1 else 1)
    assert paths.absolute(3.5) is None


def test_name_map() -> None:
    """The IP → name map returns the latest name for an address and forgets on clear."""
    names.clear()
    names.remember("a.example", ["10.0.0.1"])
    names.remember("b.example", ["10.0.0.1", "10.0.0.2"])
    assert names.name_for("10.0.0.1") == "b.example"
    assert names.name_for("10.0.0.9") is None
    names.clear()
    assert names.name_for("10.0.0.2") is None
