"""The demo scenario: learn three functions, propose policies, replay attacks.

Phases, each function in turn:

1. learn: the function runs protected in monitor mode on varied benign events
   until the analyzer calls its profile stable;
2. suggest: the analyzer proposes a policy (stage ``alert-new`` and ``full``);
3. plain: the replay events run unprotected (for the latency comparison);
4. alert mode: the same replay events run protected with the alert-stage policy,
   then every attack on that function;
5. block mode: fresh benign events and every attack again, with the full policy.

The runner records only what it did (which attack, which request ids, when) and
what the stand-ins saw; every figure about detection comes from the analyzer's
store, read right after the attack's records were stored.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import random
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import netns
from .analyzer import AnalyzerHandle, start_analyzer
from .attacks import ATTACKS, Attack, AttackEnv, Outcome, Step
from .functions_catalog import (
    INPUT_BUCKET,
    SPECS,
    FunctionSpec,
    Resources,
    create_resources,
    put_objects,
)
from .progress import Progress
from .report import AttackFigures, DemoReport, FunctionFigures, ModeResult
from .services import moto_server
from .standins import (
    DnsStandIn,
    HttpsStandIn,
    MetadataStandIn,
    Observations,
    make_certificates,
)

logger = logging.getLogger(__name__)

WORK_ROOT = Path("/tmp/palisade-demo")


class DemoError(RuntimeError):
    """The demo cannot go on (a component failed); the message says where to look."""


@dataclass
class Sizes:
    """How many benign events each phase sends per function."""

    learn: int = 50
    replay: int = 24
    block_replay: int = 16
    cold_starts: int = 4
    extra_rounds: int = 4

    @classmethod
    def quick(cls) -> Sizes:
        return cls(learn=34, replay=6, block_replay=4, cold_starts=3, extra_rounds=4)


@dataclass
class Secrets:
    """The run's fake credentials (distinct values so a leak is recognisable)."""

    access_key: str = "testing"
    secret_key: str = field(default_factory=lambda: "testing" + secrets.token_hex(12))
    session_token: str = field(
        default_factory=lambda: "testing-session-" + secrets.token_hex(12)
    )
    partner_token: str = field(default_factory=lambda: "pt_" + secrets.token_hex(12))

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_SESSION_TOKEN": self.session_token,
            "AWS_SECURITY_TOKEN": self.session_token,
        }


@dataclass
class Ran:
    """What the runner did in one group of invocations."""

    function: str
    started: float
    ended: float = 0.0
    request_ids: list[str] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    cold_init: bool = False
    # requestId -> the platform's runtimeDone duration (until the response).
    response_ms: dict[str, float] = field(default_factory=dict)

    def warm_response_ms(self) -> list[float]:
        """Response times of the warm, successful invocations."""
        return [
            self.response_ms[r.request_id]
            for r in self.results
            if _ok(r)
            and not getattr(r, "cold_start", False)
            and r.request_id in self.response_ms
        ]


class Scenario:
    """One run of the demo; ``run`` returns the report."""

    def __init__(
        self,
        out: Path,
        network: netns.Network,
        sizes: Sizes,
        progress: Progress,
        seed: int = 7,
        only_attacks: list[str] | None = None,
    ) -> None:
        self.out = out
        self.network = network
        self.sizes = sizes
        self.progress = progress
        self.rng = random.Random(seed)
        self.secrets = Secrets()
        self.observations = Observations()
        self.attacks = [a for a in ATTACKS if not only_attacks or a.id in only_attacks]
        self.work = WORK_ROOT / f"run-{int(time.time())}-{secrets.token_hex(3)}"
        self.marker_dir = self.out / "markers"
        self.policies: dict[tuple[str, str], Path] = {}
        self.analyzer: AnalyzerHandle | None = None
        self.moto_url = ""
        self.resources: Resources | None = None
        self.runtime_api = ""
        self.report = DemoReport(
            started_at=datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%d %H:%M UTC"
            ),
            network=(
                "private network namespace (lo only; outside names in a bind-mounted "
                "hosts file; DNS and metadata stand-ins)"
                if network.isolated
                else "loopback only (no namespace)"
            ),
            settings={},
        )
        self.report.notes.extend(network.notes)

    # ------------------------------------------------------------------ run

    def run(self) -> DemoReport:
        """Run every phase; servers and sandboxes are always stopped."""
        for path in (self.out, self.marker_dir, self.work):
            path.mkdir(parents=True, exist_ok=True)
        for stale in self.marker_dir.iterdir():
            stale.unlink()
        with contextlib.ExitStack() as stack:
            stack.callback(_remove, self.work)
            self._start_world(stack)
            for fn in SPECS:
                self._function(fn)
        return self.report

    def _timed(self, name: str, started: float) -> None:
        spent = time.monotonic() - started
        self.report.phase_seconds[name] = self.report.phase_seconds.get(name, 0) + spent

    def _start_world(self, stack: contextlib.ExitStack) -> None:
        started = time.monotonic()
        self.progress.phase("starting stand-ins, moto and the analyzer")
        net = self.network
        names = [*netns.PARTNER_NAMES, *netns.ATTACKER_NAMES, "localhost"]
        ca, cert, key = make_certificates(self.work / "tls", names)
        obs = self.observations
        port = 443 if net.isolated else 0
        partner = HttpsStandIn("partner", net.partner_ip, port, cert, key, obs)
        partner.start()
        stack.callback(partner.stop)
        if net.isolated:
            attacker = HttpsStandIn("attacker", net.attacker_ip, 443, cert, key, obs)
            attacker.start()
            stack.callback(attacker.stop)
            assert net.metadata_ip is not None
            metadata = MetadataStandIn(net.metadata_ip, 80, obs)
            metadata.start()
            stack.callback(metadata.stop)
            dns = DnsStandIn(net.dns_ip, 53, obs)
            dns.start()
            stack.callback(dns.stop)
            partner_url = "https://api.partner.example"
            hooks_base = "https://hooks.partner.example"
        else:
            _, bound = partner.address
            partner_url = f"https://localhost:{bound}"
            hooks_base = f"https://localhost:{bound}/hooks"
        self.resources = Resources(
            partner_url=partner_url,
            hooks_base=hooks_base,
            ca_bundle=str(ca),
            partner_token=self.secrets.partner_token,
        )

        moto = moto_server(self.out / "logs" / "moto.log")
        self.moto_url = moto.start()
        stack.callback(moto.stop)
        create_resources(self.moto_url)

        self.analyzer = start_analyzer(self.out, self.work)
        stack.callback(self.analyzer.stop)
        self.report.settings = dict(self.analyzer.settings)
        self._timed("setup", started)

    # ------------------------------------------------------------ functions

    def _function(self, fn: FunctionSpec) -> None:
        figures = FunctionFigures(name=fn.name, title=fn.title)
        self.report.functions.append(figures)
        assert self.resources is not None
        res = self.resources

        started = time.monotonic()
        self._learn(fn, figures)
        self._timed("learn", started)

        started = time.monotonic()
        self.progress.phase(f"{fn.name}: asking the analyzer for a policy")
        for stage in ("alert-new", "full"):
            self.policies[(fn.name, stage)] = self._suggest(fn, stage)
        full = json.loads(self.policies[(fn.name, "full")].read_text())
        figures.policy_rules = sum(
            len((full.get(kind) or {}).get("allow") or [])
            for kind in ("file", "process", "network", "dns", "aws", "code", "env")
        )
        self._timed("suggest", started)

        replay = fn.traffic(self.rng, self.sizes.replay, res)
        started = time.monotonic()
        self.progress.phase(f"{fn.name}: benign replay without Palisade")
        with self._sandbox(fn, protected=False) as box:
            plain = self._run_steps(fn, box, replay, "unprotected")
        figures.latency_unprotected_ms = _warm_durations(plain.results)
        figures.response_unprotected_ms = plain.warm_response_ms()
        self._timed("unprotected", started)

        for mode in ("alert", "block"):
            started = time.monotonic()
            self._mode(fn, figures, mode, replay)
            self._timed(f"{mode} mode", started)

    def _learn(self, fn: FunctionSpec, figures: FunctionFigures) -> None:
        assert self.resources is not None and self.analyzer is not None
        sizes = self.sizes
        self.progress.phase(
            f"{fn.name}: learning ({sizes.learn} benign events, "
            f"{sizes.cold_starts} cold starts)"
        )
        steps = fn.traffic(self.rng, sizes.learn, self.resources)
        # Several execution environments, as Lambda scales: what a function does
        # while it initialises is then seen more than once.
        chunk = -(-len(steps) // sizes.cold_starts)
        for n, start in enumerate(range(0, len(steps), chunk), 1):
            what = f"learning in environment {n}/{sizes.cold_starts}"
            with self._sandbox(fn, protected=True, policy=None) as box:
                ran = self._run_steps(fn, box, steps[start : start + chunk], what)
            self._await_stored(fn, ran)
        rounds = 0
        while self.analyzer.state(fn.name) != "stable" and rounds < sizes.extra_rounds:
            rounds += 1
            self.progress.update(f"waiting for a stable profile (round {rounds})")
            time.sleep(self.analyzer.quiet_seconds + 0.2)
            more = fn.traffic(self.rng, 3, self.resources)
            with self._sandbox(fn, protected=True, policy=None) as box:
                ran = self._run_steps(fn, box, more, "learning")
            self._await_stored(fn, ran)
        info = self.analyzer.version(fn.name)
        if info is None:
            raise DemoError(
                f"expected the analyzer to hold a profile of {fn.name} after "
                f"{sizes.learn} protected invocations, found none; see "
                f"{self.out / 'logs' / 'analyzer.log'} and "
                f"{self.out / 'logs' / (fn.name + '.log')}"
            )
        figures.learn_invocations = int(info.get("invocations", 0)) if info else 0
        figures.profile_state = str(info.get("state", "none")) if info else "none"
        figures.signatures = self.analyzer.signature_count(fn.name)

    def _suggest(self, fn: FunctionSpec, stage: str) -> Path:
        assert self.analyzer is not None
        path = self.out / "policies" / f"{fn.name}.{stage}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.analyzer.suggest(fn.name, stage, path)
        return path

    def _mode(
        self,
        fn: FunctionSpec,
        figures: FunctionFigures,
        mode: str,
        replay: list[Step],
    ) -> None:
        assert self.resources is not None and self.analyzer is not None
        stage = "alert-new" if mode == "alert" else "full"
        policy = self.policies[(fn.name, stage)]
        if mode == "block":
            replay = fn.traffic(self.rng, self.sizes.block_replay, self.resources)
        self.progress.phase(f"{fn.name}: {len(replay)} benign events, {mode} mode")
        attacks = [a for a in self.attacks if a.function == fn.name]
        with self._sandbox(fn, protected=True, policy=policy) as box:
            ran = self._run_steps(fn, box, replay, f"{mode} mode")
            self._await_stored(fn, ran)
            self._benign_figures(fn, figures, mode, ran)
            if mode == "alert":
                figures.latency_protected_ms = _warm_durations(ran.results)
                figures.response_protected_ms = ran.warm_response_ms()
            for attack in attacks:
                if attack.trojan is None:
                    self._attack(fn, attack, mode, box)
        for attack in attacks:
            if attack.trojan is not None:
                self._attack(fn, attack, mode, None)

    def _benign_figures(
        self, fn: FunctionSpec, figures: FunctionFigures, mode: str, ran: Ran
    ) -> None:
        assert self.analyzer is not None
        # The replay starts a fresh environment: its init belongs to it too.
        view = self.analyzer.window(
            fn.name, ran.started, ran.ended, ran.request_ids, include_init=True
        )
        failed = sum(1 for r in ran.results if not _ok(r))
        if mode == "alert":
            figures.replay_invocations = view.invocations
            figures.false_alerts = len(view.alerts)
            figures.false_alert_signatures = [a["signature"] for a in view.alerts]
            figures.alerted_benign_events = view.flagged
        else:
            figures.block_replay_invocations = view.invocations
            figures.blocked_benign_events = view.blocked
            figures.blocked_benign_targets = view.blocked_targets
            figures.false_alerts += len(view.alerts)
            figures.false_alert_signatures += [a["signature"] for a in view.alerts]
        figures.failed_benign += failed

    # -------------------------------------------------------------- attacks

    def _attack_env(self, mode: str) -> AttackEnv:
        assert self.resources is not None
        return AttackEnv(
            mode=mode,
            marker_dir=self.marker_dir,
            runtime_api=self.runtime_api,
            input_bucket=INPUT_BUCKET,
            secret_key=self.secrets.secret_key,
            session_token=self.secrets.session_token,
            hooks_base=self.resources.hooks_base,
        )

    def _figures_for(self, attack: Attack) -> AttackFigures:
        for item in self.report.attacks:
            if item.id == attack.id:
                return item
        item = AttackFigures(attack.id, attack.title, attack.function, attack.vector)
        self.report.attacks.append(item)
        return item

    def _attack(
        self, fn: FunctionSpec, attack: Attack, mode: str, box: Any | None
    ) -> None:
        assert self.analyzer is not None
        figures = self._figures_for(attack)
        result = ModeResult()
        figures.modes[mode] = result
        if attack.needs_namespace and not self.network.isolated:
            result.skipped_reason = "needs the network namespace"
            return
        self.progress.update(f"attack {attack.id} ({mode} mode)")
        policy = self.policies[(fn.name, "alert-new" if mode == "alert" else "full")]
        with contextlib.ExitStack() as stack:
            if box is None:
                box = stack.enter_context(
                    self._sandbox(
                        fn, protected=True, policy=policy, attack=attack, mode=mode
                    )
                )
            env = self._attack_env(mode)
            env.runtime_api = box.api_address
            steps = attack.steps(env, self.rng)
            since = time.time()
            ran = self._run_steps(fn, box, steps, f"attack {attack.id}")
            ran.cold_init = attack.trojan is not None
        # Stand-ins and markers first: what happened outside.
        seen = Outcome(
            payloads=[_answer(r) for r in ran.results],
            requests=self.observations.requests_since(since),
            dns_names=self.observations.names_since(since),
            marker_exists=env.marker(attack.id).exists(),
        )
        for answer in seen.payloads:
            logger.info("%s %s answer: %.300r", attack.id, mode, answer)
        result.ran = True
        result.invocations = len(steps)
        result.effect = attack.effect(env, seen)
        # Then what the analyzer stored about these invocations.
        self._await_stored(fn, ran)
        view = self.analyzer.window(
            fn.name, ran.started, ran.ended, ran.request_ids, include_init=ran.cold_init
        )
        result.stored_invocations = view.invocations
        result.alerted = bool(view.alerts)
        result.alert_signatures = [a["signature"] for a in view.alerts]
        result.layer_alerted = view.flagged
        result.blocked = view.blocked > 0
        result.blocked_rules = view.blocked_rules
        yes = {True: "yes", False: "no"}
        self.progress.phase(
            f"{fn.name}: {attack.id} ({mode}): alerted={yes[result.alerted]}"
            f" blocked={yes[result.blocked]} effect={yes[result.effect is not None]}"
        )

    # -------------------------------------------------------------- sandbox

    @contextlib.contextmanager
    def _sandbox(
        self,
        fn: FunctionSpec,
        *,
        protected: bool,
        policy: Path | None = None,
        attack: Attack | None = None,
        mode: str = "alert",
    ) -> Iterator[Any]:
        """A sandbox for ``fn``; protected ones report to the analyzer."""
        from palisade_sandbox import Sandbox

        assert self.resources is not None and self.analyzer is not None
        code = self._code_dir(fn, attack, mode)
        # A stable work path keeps the function's paths (TMPDIR, task root) the same
        # from one sandbox to the next, as they are in Lambda.
        work = self.work / "sandboxes" / (fn.name if protected else f"{fn.name}-plain")
        if work.exists():
            _remove(work)
        env = {
            **fn.env(self.resources),
            **self.secrets.env(),
            # The demo CA stands in for the public web PKI, for every function.
            "SSL_CERT_FILE": self.resources.ca_bundle,
            # /var/task is read-only in Lambda, so Python never writes bytecode
            # there; the sandbox's task copy is writable for root, hence this.
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if protected:
            env.update(self.analyzer.function_env(fn.name))
            env["AWS_LAMBDA_EXEC_WRAPPER"] = str(work / "opt" / "palisade-exec-wrapper")
            if policy is not None:
                env["PALISADE_POLICY"] = str(policy)
            else:
                env["PALISADE_MODE"] = "monitor"
        log_path = self.out / "logs" / f"{fn.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as log:

            def on_log(name: str, stream: str, line: str) -> None:
                log.write(f"{name} {stream}: {line}\n")

            box = Sandbox(
                fn.handler,
                code_dir=code,
                opt_dir="source" if protected else None,
                env=env,
                timeout=10.0,
                memory_mb=256,
                aws_endpoint=self.moto_url,
                function_name=fn.name,
                work_dir=work,
                on_log=on_log,
            )
            try:
                box.start()
                self.runtime_api = box.api_address
                yield box
            finally:
                box.shutdown()
                _remove(work)

    def _code_dir(self, fn: FunctionSpec, attack: Attack | None, mode: str) -> Path:
        if attack is None or attack.trojan is None:
            return fn.code_dir
        target = self.work / "code" / f"{fn.name}-{attack.id}-{mode}"
        if target.exists():
            _remove(target)
        shutil.copytree(
            fn.code_dir, target, ignore=shutil.ignore_patterns("__pycache__")
        )
        trojan = (Path(__file__).with_name("trojans") / attack.trojan).read_text()
        env = self._attack_env(mode)
        values = attack.placeholders(env) if attack.placeholders else {}
        for name, value in values.items():
            trojan = trojan.replace(f"@@{name}@@", value)
        assert attack.trojan_package is not None
        (target / attack.trojan_package / "__init__.py").write_text(trojan)
        return target

    def _run_steps(
        self, fn: FunctionSpec, box: Any, steps: list[Step], what: str
    ) -> Ran:
        ran = Ran(function=fn.name, started=time.time())
        for i, step in enumerate(steps, 1):
            put_objects(self.moto_url, step.objects)
            self.progress.update(what, i, len(steps))
            result = box.invoke(step.event)
            ran.request_ids.append(result.request_id)
            ran.results.append(result)
        ran.ended = time.time()
        for item in box.telemetry:
            record = item.get("record")
            if item.get("type") == "platform.runtimeDone" and isinstance(record, dict):
                duration = (record.get("metrics") or {}).get("durationMs")
                if isinstance(duration, (int, float)):
                    ran.response_ms[str(record.get("requestId"))] = float(duration)
        return ran

    def _await_stored(self, fn: FunctionSpec, ran: Ran) -> None:
        assert self.analyzer is not None
        if not self.analyzer.await_requests(fn.name, ran.request_ids, timeout=30.0):
            missing = self.analyzer.missing(fn.name, ran.request_ids)
            note = (
                f"{fn.name}: {len(missing)} of {len(ran.request_ids)} invocation "
                "records had not reached the analyzer after 30 s"
            )
            logger.warning(note)
            self.report.notes.append(note)


def _remove(path: Path) -> None:
    from palisade_sandbox.layout import remove_tree

    remove_tree(path)


def _ok(result: Any) -> bool:
    return bool(getattr(result, "ok", False))


def _answer(result: Any) -> Any:
    if getattr(result, "ok", False):
        return result.payload
    return {"error": getattr(result, "error", None)}


def _warm_durations(results: list[Any]) -> list[float]:
    return [
        float(r.duration_ms)
        for r in results
        if not getattr(r, "cold_start", False) and _ok(r)
    ]
