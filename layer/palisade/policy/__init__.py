"""Palisade's policy engine: load a policy, decide each observed operation.

    engine = load_engine(source, mode=None)      # path | JSON | YAML | dict | None
    decision = engine.decide(kind, op, target, detail, module)
    decision.verdict, decision.rule
    engine.mode, engine.mode_for(kind), engine.policy_id, engine.document

The reference is docs/policy.md.
"""

from palisade.policy.builtin import BUILTIN_IDS
from palisade.policy.engine import KINDS, VERDICTS, Decision, Engine, load_engine
from palisade.policy.loader import canonical_json, load_policy_document, policy_id
from palisade.policy.matching import canonical_ip
from palisade.policy.schema import validate_policy

__all__ = [
    "BUILTIN_IDS",
    "KINDS",
    "VERDICTS",
    "Decision",
    "Engine",
    "canonical_ip",
    "canonical_json",
    "load_engine",
    "load_policy_document",
    "policy_id",
    "validate_policy",
]
