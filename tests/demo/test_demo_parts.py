"""The demo's building blocks: event streams, attack encoding, stand-ins, report."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import socket
import ssl
import struct
import urllib.parse
import urllib.request
from pathlib import Path
from xml.etree import ElementTree

import pytest
from palisade_demo import attacks, events, netns
from palisade_demo.report import (
    AttackFigures,
    DemoReport,
    FunctionFigures,
    ModeResult,
    percentile,
)
from palisade_demo.standins import (
    DnsStandIn,
    HttpsStandIn,
    Observations,
    make_certificates,
    parse_question,
)


def test_sample_events_are_left_unchanged() -> None:
    """Building streams never modifies the sample files they start from."""
    before = {p.name: p.read_bytes() for p in events.EVENTS_DIR.glob("*.json")}
    rng = random.Random(1)
    events.s3_uploads(rng, "bucket-a", 12)
    events.OrdersTraffic(rng).take(20)
    events.sqs_batches(rng, 10, "https://hooks.example")
    after = {p.name: p.read_bytes() for p in events.EVENTS_DIR.glob("*.json")}
    assert before == after
    assert set(before) == {"s3Event.json", "sqsEvent.json", "apiGatewayProxyEvent.json"}


def test_s3_events_describe_their_objects() -> None:
    """Each S3 event names its object (URL-encoded key), size and MD5 eTag."""
    uploads = events.s3_uploads(random.Random(2), "bucket-a", 6)
    assert len({u.key for u in uploads}) == 6
    for upload in uploads:
        obj = upload.event["Records"][0]["s3"]["object"]
        assert urllib.parse.unquote_plus(obj["key"]) == upload.key
        assert obj["size"] == len(upload.body)
        assert obj["eTag"] == hashlib.md5(upload.body).hexdigest()
    assert uploads[2].body.startswith(b"\x89PNG\r\n\x1a\n")


def test_orders_traffic_covers_every_route_each_round() -> None:
    """Eight requests after the two opening creates show every route."""
    stream = events.OrdersTraffic(random.Random(3)).take(10)
    routes = {(e["httpMethod"], e["resource"]) for e in stream[2:]}
    assert routes >= {
        ("POST", "/orders"),
        ("GET", "/orders/{id}"),
        ("GET", "/orders"),
        ("PUT", "/orders/{id}"),
        ("POST", "/exports"),
        ("DELETE", "/orders/{id}"),
    }
    ids = {e["requestContext"]["requestId"] for e in stream}
    assert len(ids) == len(stream)


def test_sqs_records_carry_json_bodies_and_their_md5() -> None:
    """Every SQS record's body is JSON with an order id, and md5OfBody matches."""
    for event in events.sqs_batches(random.Random(4), 8, "https://hooks.example"):
        assert 1 <= len(event["Records"]) <= 3
        for record in event["Records"]:
            body = json.loads(record["body"])
            assert body["order_id"].startswith("ord-")
            assert (
                record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
            )


def test_injection_key_breaks_out_of_the_quoted_shell_word() -> None:
    """The key's basename has no '/', and a shell decodes it back to the command."""
    command = "touch '/tmp/some/marker/file'"
    key = attacks._injection_key(command)
    base = key.rsplit("/", 1)[-1]
    assert "/" not in base
    encoded = re.search(r"echo (\S+)\|base64", base)
    assert encoded is not None
    assert base64.b64decode(encoded.group(1)).decode().rstrip() == command


def test_every_attack_has_a_distinct_id_and_a_known_function() -> None:
    """Attack ids are unique, and trojans name the package they replace."""
    ids = [a.id for a in attacks.ATTACKS]
    assert len(ids) == len(set(ids)) == 8
    for attack in attacks.ATTACKS:
        assert attack.function in (
            attacks.FILE_PROCESSOR,
            attacks.ORDERS_API,
            attacks.PARTNER_NOTIFIER,
        )
        if attack.trojan:
            assert attack.trojan_package
            source = Path(attacks.__file__).with_name("trojans") / attack.trojan
            assert source.is_file()
    with pytest.raises(KeyError, match="expected one of"):
        attacks.by_id("nope")


def test_hosts_file_maps_the_outside_names_to_loopback() -> None:
    """Every outside name resolves to a 127.0.0.0/8 address inside the namespace."""
    text = netns.hosts_text()
    for name in [*netns.PARTNER_NAMES, *netns.ATTACKER_NAMES]:
        line = next(ln for ln in text.splitlines() if name in ln.split())
        assert line.split()[0].startswith("127.")


def _query(name: str) -> bytes:
    header = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return header + labels + b"\x00" + struct.pack(">HH", 1, 1)


def test_dns_stand_in_records_names_and_answers_nxdomain() -> None:
    """A real UDP query is recorded by name and answered NXDOMAIN with its id."""
    obs = Observations()
    dns = DnsStandIn("127.0.0.1", 0, obs)
    dns.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3)
            sock.sendto(_query("abc123.0.x.Attacker.example"), dns.address)
            answer, _ = sock.recvfrom(512)
    finally:
        dns.stop()
    assert answer[:2] == b"\x12\x34"
    assert answer[3] & 0x0F == 3  # NXDOMAIN
    assert obs.names_since(0) == ["abc123.0.x.attacker.example"]


def test_parse_question_refuses_short_or_broken_packets() -> None:
    """Bad packets raise ValueError naming the problem."""
    with pytest.raises(ValueError, match="at least 17 bytes"):
        parse_question(b"\x00" * 5)
    with pytest.raises(ValueError, match="bad label length"):
        parse_question(b"\x00" * 12 + b"\x40" + b"a" * 10)


def test_https_stand_in_is_trusted_through_the_run_ca(tmp_path: Path) -> None:
    """A client trusting only the generated CA reaches the stand-in by name."""
    ca, cert, key = make_certificates(tmp_path, ["localhost"])
    obs = Observations()
    server = HttpsStandIn("partner", "127.0.0.1", 0, cert, key, obs)
    server.start()
    try:
        port = server.address[1]
        context = ssl.create_default_context(cafile=str(ca))
        request = urllib.request.Request(
            f"https://localhost:{port}/v1/shipments", data=b'{"a": 1}', method="POST"
        )
        with urllib.request.urlopen(request, context=context, timeout=5) as resp:
            assert json.loads(resp.read())["accepted"] is True
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(
                f"https://localhost:{port}/",
                context=ssl.create_default_context(),
                timeout=5,
            )
    finally:
        server.stop()
    seen = obs.requests_since(0, "partner")
    assert [(r.method, r.path, r.body, r.host) for r in seen] == [
        ("POST", "/v1/shipments", '{"a": 1}', "localhost")
    ]


def test_percentile_interpolates() -> None:
    """Median and p95 by linear interpolation; empty gives 0."""
    assert percentile([], 0.5) == 0.0
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile(list(range(101)), 0.95) == pytest.approx(95.0)


def _report(blocked: bool, effect: str | None) -> DemoReport:
    report = DemoReport("now", "private network namespace", {"x": "1"})
    report.functions.append(
        FunctionFigures(
            "f",
            "title",
            replay_invocations=4,
            latency_unprotected_ms=[1.0, 2.0],
            latency_protected_ms=[2.0, 3.0],
        )
    )
    report.attacks.append(
        AttackFigures(
            "a",
            "an attack",
            "f",
            "vector",
            modes={
                "alert": ModeResult(ran=True, alerted=True, effect="it happened"),
                "block": ModeResult(
                    ran=True, alerted=True, blocked=blocked, effect=effect
                ),
            },
        )
    )
    return report


def test_report_passes_only_when_block_mode_stopped_the_effect() -> None:
    """An attack blocked with no effect passes; one whose effect happened fails."""
    good = _report(blocked=True, effect=None)
    assert good.ok and "-> OK" in good.summary()
    bad = _report(blocked=True, effect="marker written")
    assert not bad.ok and "NOT OK" in bad.summary()
    assert not _report(blocked=False, effect=None).ok


def test_html_report_has_well_formed_charts() -> None:
    """The page embeds its charts as well-formed SVG and escapes the text."""
    page = _report(blocked=True, effect=None).html()
    charts = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(charts) == 4
    for chart in charts:
        ElementTree.fromstring(chart)
    assert "-&gt; OK" in page
