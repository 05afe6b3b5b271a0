"""``palisade policy publish FUNCTION --file POLICY``: deliver a policy through SSM.

One String parameter per function, ``<prefix>/<function>``, holding the policy's
canonical JSON. Parameter Store versions every write, so publishing again creates
a new version and the old ones stay readable (``name:3``) for a rollback. The
extension reads the parameter during INIT when the function has
``PALISADE_POLICY=extension`` and ``PALISADE_EXTENSION_POLICY=ssm:<prefix>/<function>``
(the layer then asks the extension for it) and re-reads it every
``PALISADE_POLICY_REFRESH_S`` seconds.

Shortcomings: the parameter is a plain String (a policy is not a secret, and a
SecureString would need kms:Decrypt in every protected function's role); a policy
whose canonical JSON exceeds 8 KB cannot be stored (Parameter Store's advanced-tier
limit) and is refused.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from palisade.errors import PolicyError
from palisade.policy import canonical_json, load_policy_document, policy_id

DEFAULT_PREFIX = "/palisade/policies"
# Parameter Store value limits: standard tier 4 KB, advanced tier 8 KB.
STANDARD_LIMIT = 4096
ADVANCED_LIMIT = 8192
# Lambda function names: letters, digits, hyphens, underscores, up to 64.
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PREFIX = re.compile(r"(/[A-Za-z0-9_.-]+)+")


class PublishError(Exception):
    """The policy could not be published; the message says why and what to do."""


@dataclass(frozen=True)
class Published:
    """Where a policy went."""

    name: str
    version: int
    policy_id: str
    size: int
    tier: str


def parameter_name(function: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The SSM parameter that holds ``function``'s policy.

    Raises:
        PublishError: the function name or prefix has characters SSM or Lambda
            would refuse.
    """
    if not _FUNCTION_NAME.fullmatch(function):
        raise PublishError(
            f"expected a Lambda function name (letters, digits, '-', '_', at most "
            f"64), found {function!r}"
        )
    prefix = prefix.rstrip("/")
    if not _PREFIX.fullmatch(prefix):
        raise PublishError(
            f"expected a parameter prefix like /palisade/policies, found {prefix!r}"
        )
    return f"{prefix}/{function}"


def publish(
    function: str,
    source: str,
    prefix: str = DEFAULT_PREFIX,
    client: Any = None,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> Published:
    """Validate the policy at ``source`` and write it as a new parameter version.

    Args:
        function: the protected function's name.
        source: a policy file path (JSON or YAML) or inline text.
        client: a boto3 SSM client; made from ``endpoint_url``/``region`` if absent.

    Raises:
        PolicyError: the policy is invalid (``.issues`` has each field path).
        PublishError: the name is unusable, the policy too large, or SSM refused.
    """
    name = parameter_name(function, prefix)
    document = load_policy_document(source)
    text = canonical_json(document)
    size = len(text.encode())
    if size > ADVANCED_LIMIT:
        raise PublishError(
            f"the policy is {size} bytes as JSON, over Parameter Store's limit of "
            f"{ADVANCED_LIMIT}; merge rules with globs or drop evidence"
        )
    tier = "Standard" if size <= STANDARD_LIMIT else "Advanced"

    # Imported here: `palisade --help` must not pay for boto3.
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if client is None:
            client = boto3.client("ssm", endpoint_url=endpoint_url, region_name=region)
        answer = client.put_parameter(
            Name=name,
            Value=text,
            Type="String",
            Overwrite=True,
            Tier=tier,
            Description=f"Palisade policy of {function} ({policy_id(document)})"[:1024],
        )
    except (BotoCoreError, ClientError) as exc:
        raise PublishError(
            f"SSM refused to write {name}: {exc}; check the region, the endpoint "
            "and that you may ssm:PutParameter on it"
        ) from exc
    return Published(name, int(answer["Version"]), policy_id(document), size, tier)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="palisade policy publish",
        description="Validate a policy and store it in SSM Parameter Store as a "
        "new version of <prefix>/<FUNCTION>.",
    )
    parser.add_argument("function", metavar="FUNCTION")
    parser.add_argument("--file", required=True, metavar="POLICY")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX)
    parser.add_argument("--endpoint-url", default=None)
    parser.add_argument("--region", default=None)
    return parser


def main(argv: Sequence[str]) -> int:
    """Publish; 0 on success, 1 when refused, 2 on a usage error."""
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        done = publish(
            args.function,
            args.file if args.file != "-" else sys.stdin.read(),
            prefix=args.prefix,
            endpoint_url=args.endpoint_url,
            region=args.region,
        )
    except PolicyError as exc:
        for path, message in exc.issues or [("$", str(exc))]:
            print(f"{args.file}: {path}: {message}", file=sys.stderr)
        print("palisade policy publish: nothing was published", file=sys.stderr)
        return 1
    except PublishError as exc:
        print(f"palisade policy publish: {exc}", file=sys.stderr)
        return 1
    print(
        f"published {done.name} version {done.version} "
        f"(policy {done.policy_id}, {done.size} bytes, {done.tier} tier)"
    )
    print(
        f"{args.function} reads it with PALISADE_POLICY=extension and "
        f"PALISADE_EXTENSION_POLICY=ssm:{done.name}"
    )
    return 0
