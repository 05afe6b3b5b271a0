"""Realistic handlers end to end in the local sandbox, and the wrapper's own cost.

The three demo functions (an S3 file processor that runs ``file`` and ``gzip``, a
Powertools orders API on DynamoDB, an SQS consumer posting to a partner API) run
in Palisade's local sandbox against one moto server and one partner stand-in on
loopback, in five variants side by side:

- ``unprotected``: no layer;
- ``palisade-noext``: the layer through the exec wrapper, monitor mode, no
  extension (records go to the function's output);
- ``palisade``: layer and extension, monitor mode (the deployed shape);
- ``palisade-block``: layer and extension, block mode, with a policy learnt from
  a monitor-mode pass over other benign events (:mod:`policylearn`);
- ``zen``: Aikido Zen in blocking mode (:mod:`zen_setup`), no layer.

Every variant gets the same event stream; the variants alternate invocation by
invocation (order rotated each round). The figure is the sandbox's invoke-phase
duration (event handed to the runtime until the runtime and every extension wait
in /next again, the part Lambda bills), p50 and p99 over the repetitions. The
extension's added latency is ``palisade`` minus ``palisade-noext``.

The wrapper figure is taken apart from the sandbox, in fresh processes: a trivial
handler called through ``palisade.protect`` (one invocation context and one
record built and written per call, to ``/dev/null`` as no extension is there)
against the same handler unwrapped.

Limitation: the stand-ins answer over plain HTTP on loopback, so TLS and real
network latency, which dominate real invocations, are absent; the ratios are
therefore an upper bound of what the guard adds to a real invocation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import policylearn, sandboxes, stats
from .children import HERE, clean_env, run_json
from .errors import BenchError
from .figures import NOISE_LIMIT, Figure, judged, not_measured
from .settings import REPO, Plan

log = logging.getLogger(__name__)

SECTION = "invocation"
DEMO = REPO / "demo"
VARIANTS = ("unprotected", "palisade-noext", "palisade", "palisade-block", "zen")
VARIANT_LABELS = {
    "unprotected": "no protection",
    "palisade-noext": "Palisade monitor, no extension",
    "palisade": "Palisade monitor + extension",
    "palisade-block": "Palisade block + extension, learnt policy",
    "zen": "Aikido Zen (peer), blocking",
}
HANDLERS = ("file_processor", "orders_api", "partner_notifier")
BUDGETED = (
    (
        "invocation.wrapper",
        "handler wrapper + record, per invocation (trivial handler)",
        "µs",
        "invocation_wrapper_us",
    ),
    *(
        (
            f"invocation.extension_p50.{h}",
            f"{h}: latency the extension adds, p50",
            "ms",
            "extension_latency_p50_ms",
        )
        for h in HANDLERS
    ),
    *(
        (
            f"invocation.extension_p99.{h}",
            f"{h}: latency the extension adds, p99",
            "ms",
            "extension_latency_p99_ms",
        )
        for h in HANDLERS
    ),
)
ACCOUNT_KEYS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# --------------------------------------------------------------- stand-ins


class _PartnerHandler(BaseHTTPRequestHandler):
    """The shipping partner and the merchants' callbacks, on loopback."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"accepted": True, "tracking": "TRK-1", "path": self.path})
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@contextlib.contextmanager
def _partner_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PartnerHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="bench-partner")
    thread.daemon = True
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------- functions


@dataclass
class FunctionSpec:
    """One demo function: where its code is, its settings and its events."""

    name: str
    code_dir: Path
    env: Callable[[str], dict[str, str]]
    events: Callable[[str, int], Callable[[Any], Any]]
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1")
    setup: Callable[[str], None] = field(default=lambda variant: None)


def _demo_events() -> Any:
    import importlib
    import sys

    if str(DEMO) not in sys.path:
        sys.path.insert(0, str(DEMO))
    try:
        return importlib.import_module("palisade_demo.events")
    except ImportError as exc:
        raise BenchError(
            f"the demo's event generators cannot be imported: {exc}"
        ) from exc


def _boto(endpoint: str, service: Any) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_session_token="testing",
    )


def _specs(endpoint: str, partner_port: int, pool: int) -> dict[str, FunctionSpec]:
    """The three demo functions, with moto resources created for them."""
    events = _demo_events()
    functions = DEMO / "palisade_demo" / "functions"
    for name in HANDLERS:
        if not (functions / name / "app.py").is_file():
            raise BenchError(f"demo function {name} is missing ({functions / name})")

    s3 = _boto(endpoint, "s3")
    for bucket in ("bench-uploads", "bench-processed"):
        s3.create_bucket(Bucket=bucket)
    uploads = events.s3_uploads(random.Random(7), "bench-uploads", pool)
    for upload in uploads:
        s3.put_object(Bucket=upload.bucket, Key=upload.key, Body=upload.body)
    learn_uploads = events.s3_uploads(random.Random(8), "bench-uploads", 12)
    for upload in learn_uploads:
        s3.put_object(Bucket=upload.bucket, Key=upload.key, Body=upload.body)

    dynamodb = _boto(endpoint, "dynamodb")

    def orders_setup(variant: str) -> None:
        dynamodb.create_table(
            TableName=f"bench-orders-{variant}",
            KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

    def file_events(variant: str, seed: int) -> Callable[[Any], Any]:
        chosen = uploads if seed == 0 else learn_uploads
        state = {"i": 0}

        def next_event(previous: Any) -> Any:
            del previous
            event = chosen[state["i"] % len(chosen)].event
            state["i"] += 1
            return event

        return next_event

    def orders_events(variant: str, seed: int) -> Callable[[Any], Any]:
        import inspect

        traffic = events.OrdersTraffic(random.Random(11 + seed))
        # Newer versions of the demo's traffic no longer learn from the answer.
        takes_answer = len(inspect.signature(traffic.next).parameters) >= 1
        return lambda previous: (
            traffic.next(previous) if takes_answer else traffic.next()
        )

    def partner_events(variant: str, seed: int) -> Callable[[Any], Any]:
        batches = events.sqs_batches(
            random.Random(13 + seed), 64, f"http://127.0.0.1:{partner_port}"
        )
        state = {"i": 0}

        def next_event(previous: Any) -> Any:
            del previous
            event = batches[state["i"] % len(batches)]
            state["i"] += 1
            return event

        return next_event

    return {
        "file_processor": FunctionSpec(
            "file_processor",
            functions / "file_processor",
            lambda variant: {"OUTPUT_BUCKET": "bench-processed"},
            file_events,
        ),
        "orders_api": FunctionSpec(
            "orders_api",
            functions / "orders_api",
            lambda variant: {
                "TABLE_NAME": f"bench-orders-{variant}",
                "POWERTOOLS_SERVICE_NAME": "orders-api",
                "POWERTOOLS_LOG_LEVEL": "WARNING",
            },
            orders_events,
            setup=orders_setup,
        ),
        "partner_notifier": FunctionSpec(
            "partner_notifier",
            functions / "partner_notifier",
            lambda variant: {
                "PARTNER_API_URL": f"http://localhost:{partner_port}",
                "PARTNER_TOKEN": "bench-token",
            },
            partner_events,
        ),
    }


ZEN_ENTRY = '''\
"""Benchmark entry: Aikido Zen first, then the function's own module."""
import zen_setup

zen_setup.protect({hosts!r})

import app  # noqa: E402


def handler(event, context):
    zen_setup.set_context(event, {name!r})
    return app.handler(event, context)
'''


def _zen_code(spec: FunctionSpec, work: Path) -> Path:
    """A copy of the function's code with Zen's entry module beside it."""
    import shutil

    code = work / f"zen-code-{spec.name}"
    shutil.copytree(spec.code_dir, code, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(HERE / "zen_setup.py", code / "zen_setup.py")
    (code / "bench_zen_entry.py").write_text(
        ZEN_ENTRY.format(hosts=spec.allowed_hosts, name=spec.name)
    )
    return code


# ---------------------------------------------------------------- sandboxes


def _sandbox(
    sandbox_mod: Any,
    spec: FunctionSpec,
    variant: str,
    opts: sandboxes.OptDirs,
    endpoint: str,
    work: Path,
    policy: dict[str, Any] | None,
    env_key: str | None = None,
) -> Any:
    env = {**spec.env(env_key or variant)}
    handler = "app.handler"
    code = spec.code_dir
    opt: Path | None = None
    if variant == "zen":
        code = _zen_code(spec, work)
        handler = "bench_zen_entry.handler"
        env.update({"AIKIDO_BLOCK": "true", "AIKIDO_TMP_DIR": "/tmp"})
    elif variant.startswith("palisade"):
        opt = opts.for_variant(extension=variant != "palisade-noext")
        mode = "block" if variant == "palisade-block" else "monitor"
        sink = work / f"batches-{spec.name}-{variant}.jsonl"
        env.update(sandboxes.palisade_env(opt, mode, sink, policy))
        if variant == "palisade-noext":
            env["PALISADE_OUTPUT"] = f"file:{work / f'records-{spec.name}.jsonl'}"
    box = sandbox_mod.Sandbox(
        handler,
        code_dir=code,
        opt_dir=opt,
        env=env,
        aws_endpoint=endpoint,
        moto=False,
        timeout=15,
        memory_mb=512,
        function_name=f"bench-{spec.name}",
    )
    box.start()
    return box


def _learn(
    sandbox_mod: Any,
    spec: FunctionSpec,
    opts: sandboxes.OptDirs,
    endpoint: str,
    work: Path,
    count: int,
) -> dict[str, Any]:
    """Monitor-mode pass over a different benign stream; its policy."""
    spec.setup("learn")
    box = _sandbox(
        sandbox_mod, spec, "palisade", opts, endpoint, work / "learn", None, "learn"
    )
    next_event = spec.events("learn", 1)
    previous: Any = None
    layout = box.layout
    variables = {str(layout.tmp): "$TMP", str(layout.task): "$TASK_ROOT"}
    try:
        for _ in range(count):
            result = box.invoke(next_event(previous))
            previous = result.payload
            if not result.ok:
                raise BenchError(
                    f"{spec.name} failed in the learning pass: {result.status} "
                    f"{(result.error or {}).get('errorMessage', '')[:200]}"
                )
    finally:
        box.shutdown()
    records = policylearn.records_from_batches(
        work / "learn" / f"batches-{spec.name}-palisade.jsonl"
    )
    if not records:
        raise BenchError(
            f"the learning pass of {spec.name} shipped no records; the block "
            "variant would have no policy"
        )
    roots = [str(REPO / "demo"), str(REPO / "layer"), str(opts.full)]
    policy = policylearn.build_policy(records, f"bench-{spec.name}", roots, variables)
    try:
        from palisade.policy import load_engine

        load_engine(policy)
    except Exception as exc:
        raise BenchError(
            f"the policy learnt for {spec.name} is not valid for the layer: {exc}"
        ) from exc
    return policy


@dataclass
class Series:
    """What one (function, variant) sandbox produced."""

    durations_ms: list[float] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    blocks: list[int] = field(default_factory=list)
    failure: str | None = None


class _Rounds:
    """Interleaved invocations of every (function, variant) sandbox, in blocks.

    Each block is a contiguous run of rounds; the ratio of each variant's median
    to the unprotected median is computed per block, so that the spread of those
    ratios says how stable the comparison was over the run.
    """

    def __init__(
        self,
        plan: Plan,
        variants: list[str],
        boxes: dict[tuple[str, str], Any],
        streams: dict[tuple[str, str], Callable[[Any], Any]],
        series: dict[str, dict[str, Series]],
    ) -> None:
        self.plan = plan
        self.variants = variants
        self.boxes = boxes
        self.streams = streams
        self.series = series
        self.previous: dict[tuple[str, str], Any] = {}
        self.blocks = 0

    def run(self, first: int, count: int, measured: bool) -> None:
        """Invoke every sandbox ``count`` times, variants alternating."""
        if measured:
            self.blocks += 1
        for i in range(first, first + count):
            for name in self.plan.handlers:
                order = [v for v in self.variants if (name, v) in self.boxes]
                shift = i % len(order) if order else 0
                for variant in order[shift:] + order[:shift]:
                    self._one(name, variant, i, measured)

    def _one(self, name: str, variant: str, i: int, measured: bool) -> None:
        s = self.series[name][variant]
        if s.failure:
            return
        key = (name, variant)
        event = self.streams[key](self.previous.get(key))
        began = time.perf_counter()
        result = self.boxes[key].invoke(event)
        wall = (time.perf_counter() - began) * 1000
        self.previous[key] = result.payload
        s.statuses[result.status] = s.statuses.get(result.status, 0) + 1
        if result.status != "success":
            if not measured or result.status in ("init_error", "crash"):
                message = (result.error or {}).get("errorMessage", "")
                s.failure = (
                    f"invocation {i} ended {result.status}: {str(message)[:200]}"
                )
            return
        if measured:
            s.durations_ms.append(result.duration_ms)
            s.wall_ms.append(wall)
            s.blocks.append(self.blocks)

    def noisy(self) -> bool:
        """True when a variant's per-block ratio to unprotected spreads wide."""
        for per in self.series.values():
            base = per.get("unprotected")
            if base is None or not base.durations_ms:
                continue
            for variant, s in per.items():
                if variant == "unprotected" or not s.durations_ms:
                    continue
                ratios = block_ratios(s, base)
                if len(ratios) >= 3 and stats.spread(ratios) > NOISE_LIMIT:
                    return True
        return False


def block_ratios(s: Series, base: Series) -> list[float]:
    """Median of ``s`` over median of ``base``, block by block."""
    out = []
    for block in sorted(set(s.blocks) & set(base.blocks)):
        mine = [d for d, b in zip(s.durations_ms, s.blocks, strict=True) if b == block]
        theirs = [
            d for d, b in zip(base.durations_ms, base.blocks, strict=True) if b == block
        ]
        if mine and theirs:
            out.append(stats.median(mine) / stats.median(theirs))
    return out


def _run(plan: Plan) -> dict[str, Any]:
    sandbox_mod = sandboxes.require_sandbox()
    from palisade_sandbox import MotoEndpoint

    variants = [v for v in VARIANTS if v != "zen" or plan.peer_available]
    series: dict[str, dict[str, Series]] = {
        h: {v: Series() for v in variants} for h in plan.handlers
    }
    ext_rss: dict[str, float] = {}
    policies: dict[str, Any] = {}
    moto = MotoEndpoint()
    with contextlib.ExitStack() as stack:
        endpoint = moto.start()
        stack.callback(moto.stop)
        port = stack.enter_context(_partner_server())
        opts = stack.enter_context(sandboxes.opt_dirs())
        work = Path(
            stack.enter_context(
                tempfile.TemporaryDirectory(prefix="palisade-bench-inv-")
            )
        )
        blocked: dict[str, list[str]] = {}
        # Runs after every sandbox has shut down (and flushed), before the work
        # folder goes: what the block variant refused, as evidence.
        attack_ids: set[str] = set()
        stack.callback(_collect_blocked, work, blocked, attack_ids)
        with _aws_env():
            specs = _specs(endpoint, port, pool=24)

        learn_count = plan.learn_invocations
        for name, spec in ((n, specs[n]) for n in plan.handlers):
            try:
                policies[name] = _learn(
                    sandbox_mod, spec, opts, endpoint, work, learn_count
                )
            except BenchError as exc:
                series[name]["palisade-block"].failure = str(exc)

        boxes: dict[tuple[str, str], Any] = {}
        streams: dict[tuple[str, str], Callable[[Any], Any]] = {}
        for name, spec in ((n, specs[n]) for n in plan.handlers):
            for variant in variants:
                if series[name][variant].failure:
                    continue
                spec.setup(variant)
                try:
                    box = _sandbox(
                        sandbox_mod,
                        spec,
                        variant,
                        opts,
                        endpoint,
                        work,
                        policies.get(name) if variant == "palisade-block" else None,
                    )
                except Exception as exc:
                    series[name][variant].failure = f"sandbox did not start: {exc}"
                    continue
                stack.callback(box.shutdown)
                boxes[(name, variant)] = box
                streams[(name, variant)] = spec.events(variant, 0)

        warmup = plan.warmup_invocations
        rounds = _Rounds(plan, variants, boxes, streams, series)
        rounds.run(0, warmup, measured=False)
        began = time.monotonic()
        block = max(1, plan.invocations // max(1, plan.invocation_rounds))
        done = 0
        while done < plan.invocations:
            count = min(block, plan.invocations - done)
            rounds.run(warmup + done, count, measured=True)
            done += count
        block_cost = (time.monotonic() - began) / max(1, rounds.blocks)
        if not plan.quick and rounds.noisy() and plan.may_repeat(block_cost + 150):
            log.info("invocation: ratios spread wide across blocks; one more block")
            rounds.run(warmup + done, block, measured=True)
        attacks = _attack_checks(boxes, endpoint, port, plan, attack_ids)
        for (name, variant), box in boxes.items():
            if variant == "palisade":
                for pid in box.extension_pids.values():
                    now, _ = sandboxes.rss_kb(pid)
                    if now is not None:
                        ext_rss[name] = now / 1024
    return {
        "series": series,
        "policies": policies,
        "ext_rss": ext_rss,
        "variants": variants,
        "blocked": blocked,
        "attacks": attacks,
    }


ATTACKS = {
    "orders_api": (
        "path traversal: GET /exports?name=/proc/self/environ",
        "the export download joins the query parameter to its folder unchecked",
    ),
    "partner_notifier": (
        "server-side request forgery: a message whose callback_url names a host "
        "the function never calls (`vm`, which /etc/hosts maps to 127.0.0.1, where "
        "the stand-in answers)",
        "the callback URL comes from the message and is fetched unchecked",
    ),
    "file_processor": (
        "command injection: an uploaded .gz whose key breaks out of the shell word",
        "the .gz branch pastes the key into `gzip -dc '...' | wc -c`; the injected "
        "command is `true`; S3 delivers the key URL-encoded in the event",
    ),
}


def _attack_event(name: str, endpoint: str, port: int) -> Any:
    events = _demo_events()
    rng = random.Random(99)
    if name == "partner_notifier":
        message = {
            "order_id": "ord-0000000001",
            "status": "shipped",
            "customer": "acme",
            "callback_url": f"http://vm:{port}/steal",
        }
        return events.sqs_event([events.sqs_record(rng, message, "order-updates")])
    if name == "orders_api":
        return events.api_event(
            rng, "GET", "/exports", query={"name": "/proc/self/environ"}
        )
    import gzip

    key = "uploads/archive';true;'.gz"
    body = gzip.compress(b"quarterly report\n", mtime=0)
    with _aws_env():
        _boto(endpoint, "s3").put_object(Bucket="bench-uploads", Key=key, Body=body)
    return events.s3_event(rng, "bench-uploads", key, body)


def _attack_checks(
    boxes: dict[tuple[str, str], Any],
    endpoint: str,
    port: int,
    plan: Plan,
    ids: set[str],
) -> dict[str, dict[str, str]]:
    """Not timed: does each protecting variant stop the demo's own bugs?

    A check that the protection under test was really configured: the same
    malicious event goes to every variant after the measurement.
    """
    out: dict[str, dict[str, str]] = {}
    for name in ATTACKS:
        if name not in plan.handlers:
            continue
        event = _attack_event(name, endpoint, port)
        out[name] = {}
        for variant in ("unprotected", "palisade", "palisade-block", "zen"):
            box = boxes.get((name, variant))
            if box is None:
                continue
            result = box.invoke(event)
            ids.add(result.request_id)
            error = result.error or {}
            if result.ok:
                status = result.payload
                if isinstance(status, dict) and "statusCode" in status:
                    verdict = f"ran: HTTP {status['statusCode']}"
                elif isinstance(status, dict) and status.get("batchItemFailures"):
                    error_text = str((status.get("results") or [{}])[0].get("error"))
                    verdict = f"stopped inside the handler: {error_text[:140]}"
                else:
                    verdict = "ran to completion"
            else:
                verdict = (
                    f"stopped: {error.get('errorType')}: "
                    f"{str(error.get('errorMessage', ''))[:140]}"
                )
            out[name][variant] = verdict
    return out


def _collect_blocked(
    work: Path, out: dict[str, list[str]], attack_ids: set[str]
) -> None:
    """Distinct events the block variants refused, per function, and their modes.

    ``out["<name>:modes"]`` lists the modes the records reported, to prove the
    block variant really ran in block mode (an unusable policy falls back to
    monitor).
    """
    for path in work.glob("batches-*-palisade-block.jsonl"):
        name = path.name[len("batches-") : -len("-palisade-block.jsonl")]
        seen: dict[str, None] = {}
        records = [
            r
            for r in policylearn.records_from_batches(path)
            if r.get("request_id") not in attack_ids
        ]
        out[f"{name}:modes"] = sorted({str(r.get("mode")) for r in records})
        for record in records:
            for event in record.get("events", []):
                if event.get("verdict") == "blocked":
                    what = f"{event['kind']} {event['op']} {event['target']}"
                    seen.setdefault(f"{what} ({event['rule']})", None)
        out[name] = list(seen)


@contextlib.contextmanager
def _aws_env() -> Iterator[None]:
    import os

    saved = {k: os.environ.get(k) for k in ACCOUNT_KEYS}
    os.environ.update(ACCOUNT_KEYS)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ------------------------------------------------------------------ figures


def _wrapper(plan: Plan) -> tuple[list[Figure], dict[str, Any]]:
    """Per-invocation cost of palisade.protect + record, in fresh processes."""
    fid, name, unit, budget = BUDGETED[0]
    per: dict[str, list[float]] = {"none": [], "palisade": []}
    try:
        with tempfile.TemporaryDirectory(prefix="palisade-bench-wrap-") as tmp:
            for i in range(max(2, plan.micro_processes // 2)):
                for variant in (
                    ["none", "palisade"] if i % 2 == 0 else ["palisade", "none"]
                ):
                    workdir = Path(tmp) / f"{variant}-{i}"
                    env = clean_env(
                        {
                            "PALISADE_EXTENSION_SOCKET": str(workdir / "absent.sock"),
                            "PALISADE_EXTENSION_KEY": str(workdir / "absent.key"),
                            "PALISADE_OUTPUT": "file:/dev/null",
                            "PALISADE_MODE": "monitor",
                        }
                        if variant == "palisade"
                        else None
                    )
                    got = run_json(
                        "process_child.py",
                        ["wrapper", variant, str(workdir), str(plan.wrapper_calls)],
                        env,
                        timeout=120,
                        cwd=Path(tmp),
                    )
                    per[variant].append(stats.median(got["per_call_us"]))
    except BenchError as exc:
        return [not_measured(fid, SECTION, name, unit, str(exc), budget)], {}
    base = stats.median(per["none"])
    value = stats.median(per["palisade"])
    figure = Figure(
        id=fid,
        section=SECTION,
        name=name,
        value=value - base,
        unit="µs",
        median=value,
        p99=stats.quantile(per["palisade"], 0.99),
        n=len(per["palisade"]),
        spread=stats.spread(per["palisade"]),
        baseline=base,
        context=f"{value:.1f} µs vs {base:.2f} µs for the bare call; "
        f"{plan.wrapper_calls} calls per process; record written to /dev/null "
        "(no extension); medians of per-process medians",
    )
    return [judged(figure, budget)], {"wrapper_us": per}


def _series_figures(run: dict[str, Any]) -> tuple[list[Figure], dict[str, Any]]:
    figures: list[Figure] = []
    series: dict[str, dict[str, Series]] = run["series"]
    latencies: dict[str, dict[str, list[float]]] = {}
    for name in series:
        latencies[name] = {}
        base_series = series[name]["unprotected"]
        base = (
            stats.summary(base_series.durations_ms)
            if base_series.durations_ms
            else None
        )
        for variant in run["variants"]:
            s = series[name][variant]
            fid = f"invocation.{name}.{variant}"
            label = f"{name}: {VARIANT_LABELS[variant]}"
            if not s.durations_ms:
                figures.append(
                    not_measured(
                        fid,
                        SECTION,
                        label,
                        "ms",
                        s.failure or "no successful invocation",
                    )
                )
                continue
            modes = run["blocked"].get(f"{name}:modes")
            if variant == "palisade-block" and modes is not None and modes != ["block"]:
                figures.append(
                    not_measured(
                        fid,
                        SECTION,
                        label,
                        "ms",
                        f"the records of the block variant report mode(s) {modes}: "
                        "the layer did not enforce the learnt policy",
                    )
                )
                continue
            latencies[name][variant] = s.durations_ms
            summ = stats.summary(s.durations_ms)
            ratios = block_ratios(s, base_series) if variant != "unprotected" else []
            noise = stats.spread(ratios) if len(ratios) >= 2 else None
            extra = ""
            others = {k: v for k, v in s.statuses.items() if k != "success"}
            if others:
                extra = f"; not successful: {others}"
                refused = run["blocked"].get(name) or []
                if variant == "palisade-block" and refused:
                    extra += (
                        f"; the learnt policy refused {len(refused)} distinct benign "
                        f"operation(s) the learning pass never saw, e.g. {refused[0]}"
                    )
            figures.append(
                Figure(
                    id=fid,
                    section=SECTION,
                    name=label,
                    value=summ["median"],
                    unit="ms",
                    median=summ["median"],
                    p99=summ["p99"],
                    n=summ["n"],
                    spread=noise,
                    ratio=stats.ratio(summ["median"], base["median"]) if base else None,
                    baseline=base["median"] if base else None,
                    context=(
                        f"p99 ratio {summ['p99'] / base['p99']:.3f}x; " if base else ""
                    )
                    + f"IQR/median of the latencies {summ['spread'] * 100:.0f} %"
                    + (
                        f"; spread = of the p50 ratio across {len(ratios)} blocks"
                        if ratios
                        else ""
                    )
                    + extra,
                    extra={"statuses": s.statuses},
                )
            )
        with_ext, without = series[name]["palisade"], series[name]["palisade-noext"]
        for pct, key, budget in (
            (0.5, "p50", BUDGETED[1][3]),
            (0.99, "p99", BUDGETED[4][3]),
        ):
            fid = f"invocation.extension_{key}.{name}"
            label = f"{name}: latency the extension adds, {key}"
            if not with_ext.durations_ms or not without.durations_ms:
                reason = (
                    with_ext.failure or without.failure or "no successful invocation"
                )
                figures.append(not_measured(fid, SECTION, label, "ms", reason, budget))
                continue
            a = stats.quantile(with_ext.durations_ms, pct)
            b = stats.quantile(without.durations_ms, pct)
            figures.append(
                judged(
                    Figure(
                        id=fid,
                        section=SECTION,
                        name=label,
                        value=a - b,
                        unit="ms",
                        n=min(len(with_ext.durations_ms), len(without.durations_ms)),
                        ratio=stats.ratio(a, b),
                        baseline=b,
                        context=f"{key} {a:.2f} ms with the extension vs {b:.2f} ms "
                        "without, same layer, same run",
                    ),
                    budget,
                )
            )
    for name, mb in sorted(run["ext_rss"].items()):
        figures.append(
            judged(
                Figure(
                    id=f"invocation.extension_rss.{name}",
                    section=SECTION,
                    name=f"{name}: extension VmRSS after the run",
                    value=mb,
                    unit="MB",
                    n=1,
                    context="read from /proc/<pid>/status after every invocation "
                    "of this function",
                ),
                "extension_rss_mb",
            )
        )
    raw = {
        "latencies_ms": latencies,
        "variants": list(run["variants"]),
        "statuses": {
            n: {v: s.statuses for v, s in per.items()} for n, per in series.items()
        },
        "failures": {
            n: {v: s.failure for v, s in per.items() if s.failure}
            for n, per in series.items()
        },
        "wall_ms": {
            n: {v: s.wall_ms for v, s in per.items()} for n, per in series.items()
        },
        "extension_rss_mb": run["ext_rss"],
        "blocked_in_block_variant": run["blocked"],
        "policy_rules": {
            n: {k: len(v.get("allow", [])) for k, v in p.items() if isinstance(v, dict)}
            for n, p in run["policies"].items()
        },
    }
    return figures, raw


def _extension_breakdown(plan: Plan) -> tuple[list[Figure], dict[str, Any]]:
    """Trivial handler: the extension's added latency with its /proc view on and off.

    Context for the per-function figures: with nothing else in the invocation,
    what remains is the extension's own work between the response and /next.
    """
    variants = {
        "no extension": None,
        "extension": {},
        "extension, PALISADE_OUTSIDE_VIEW=off": {"PALISADE_OUTSIDE_VIEW": "off"},
    }
    durations: dict[str, list[float]] = {v: [] for v in variants}
    count = max(5, plan.invocations // 3)
    try:
        sandbox_mod = sandboxes.require_sandbox()
        with contextlib.ExitStack() as stack:
            opts = stack.enter_context(sandboxes.opt_dirs())
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            code = tmp / "code"
            code.mkdir()
            (code / "app.py").write_text(sandboxes.TRIVIAL_APP)
            boxes = {}
            for label, extra in variants.items():
                opt = opts.no_extension if extra is None else opts.full
                env = sandboxes.palisade_env(opt, "monitor", tmp / "batches.jsonl")
                env.update(extra or {})
                box = sandbox_mod.Sandbox(
                    "app.handler",
                    code_dir=code,
                    opt_dir=opt,
                    env=env,
                    moto=False,
                    timeout=10,
                )
                stack.callback(box.shutdown)
                boxes[label] = box
            labels = list(variants)
            for i in range(count + 3):
                shift = i % len(labels)
                for label in labels[shift:] + labels[:shift]:
                    result = boxes[label].invoke({"i": i})
                    if not result.ok:
                        raise BenchError(
                            f"trivial handler failed ({label}): {result.status}"
                        )
                    if i >= 3:
                        durations[label].append(result.duration_ms)
    except BenchError as exc:
        return [
            not_measured(
                "invocation.trivial.extension",
                SECTION,
                "trivial handler: latency the extension adds",
                "ms",
                str(exc),
            )
        ], {}
    base = durations["no extension"]
    figures = []
    for label in labels[1:]:
        for pct, key in ((0.5, "p50"), (0.99, "p99")):
            a = stats.quantile(durations[label], pct)
            b = stats.quantile(base, pct)
            slug = "outside_off" if "OUTSIDE" in label else "default"
            figures.append(
                Figure(
                    id=f"invocation.trivial.{slug}.{key}",
                    section=SECTION,
                    name=f"trivial handler: latency the {label} adds, {key} (context)",
                    value=a - b,
                    unit="ms",
                    n=len(durations[label]),
                    ratio=stats.ratio(a, b),
                    baseline=b,
                    context=f"{key} {a:.2f} ms vs {b:.2f} ms without the extension",
                )
            )
    return figures, {"trivial_extension_ms": durations}


def _attack_notes(attacks: dict[str, dict[str, str]]) -> str:
    if not attacks:
        return ""
    lines = [
        "Protection check (not timed; the same malicious event sent to each "
        "variant after the measurement):",
        "",
    ]
    for name, verdicts in attacks.items():
        what, why = ATTACKS[name]
        lines.append(f"- **{name}**, {what} ({why}):")
        for variant, verdict in verdicts.items():
            lines.append(f"  - {VARIANT_LABELS[variant]}: {verdict}")
    return "\n".join(lines) + "\n\n"


def measure(plan: Plan) -> dict[str, Any]:
    """Wrapper cost, then the demo functions end to end in every variant."""
    figures, raw = _wrapper(plan)
    more_figures, more_raw = _extension_breakdown(plan)
    figures += more_figures
    raw.update(more_raw)
    try:
        run = _run(plan)
    except BenchError as exc:
        for fid, name, unit, budget in BUDGETED[1:]:
            figures.append(not_measured(fid, SECTION, name, unit, str(exc), budget))
        return {"figures": figures, "raw": raw}
    more, more_raw = _series_figures(run)
    more_raw["attack_checks"] = run["attacks"]
    return {
        "figures": figures + more,
        "raw": {**raw, **more_raw},
        "notes": _attack_notes(run["attacks"])
        + "Durations are the sandbox's invoke phase (event to runtime and "
        "every extension back in /next, what Lambda bills), over the same event "
        "stream for every variant, variants alternating. The block variant's "
        "policy was learnt from a monitor-mode pass over a different benign "
        "stream. Zen's configuration is described under 'The peer'.",
    }
