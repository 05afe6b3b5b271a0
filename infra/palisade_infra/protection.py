"""``PalisadeProtection``: an Aspect that attaches Palisade to every Python function.

    Aspects.of(scope).add(PalisadeProtection(layer_zip=..., analyzer=analyzer))

For each zip-packaged Python function in the scope it adds the layer (created once
per stack from the zip, or the layer given), ``AWS_LAMBDA_EXEC_WRAPPER``, Palisade's
settings (mode, policy from SSM, sink) and the permissions those need: reading the
function's policy parameter and writing to the analyzer's stream. It leaves alone
container-image functions, other runtimes, the analyzer's own functions (which
would otherwise report on themselves in a loop) and any function ``skip`` selects.

A function it cannot protect is named in an error annotation, which makes
``cdk synth`` and ``cdk deploy`` fail: one that already has five layers (Lambda's
limit), or one whose Python version or architecture differs from the layer's
(the layer holds compiled modules for one of each).

The policy parameter is ``<policy_prefix>/<name>``, where name is the function's
``function_name`` when it is set in code, else ``Names.unique_resource_name`` of
the function (shown by ``cdk synth`` as PALISADE_EXTENSION_POLICY); publish it with
``palisade policy publish NAME --file POLICY``.

Shortcoming: an ``AWS_LAMBDA_EXEC_WRAPPER`` the function already sets (another
vendor's wrapper) is replaced, as wrappers cannot be chained by the runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import IConstruct

from palisade_infra.analyzer import PalisadeAnalyzer

WRAPPER = "/opt/palisade-exec-wrapper"
MAX_LAYERS = 5
MODES = ("monitor", "alert", "block")
_ARCHES = {"x86_64": lambda_.Architecture.X86_64, "arm64": lambda_.Architecture.ARM_64}


@jsii.implements(cdk.IAspect)
class PalisadeProtection:
    """Protect every Python zip function of a scope with the Palisade layer.

    Args:
        layer_zip: the zip from ``palisade layer build`` (one layer per stack is
            made from it); or give ``layer``.
        layer: an existing layer version to attach instead.
        python: the CPython version the layer was built for.
        architecture: ``x86_64`` or ``arm64``, as the layer was built.
        analyzer: ship to this analyzer's stream (``PALISADE_SINK=kinesis``).
        mode: ``PALISADE_MODE`` (monitor, alert or block); unset keeps the
            layer's default.
        policy_prefix: SSM prefix of the per-function policies; None for none.
        environment: more variables for every protected function.
        skip: a predicate choosing functions to leave alone.
    """

    def __init__(
        self,
        *,
        layer_zip: str | Path | None = None,
        layer: lambda_.ILayerVersion | None = None,
        python: str = "3.12",
        architecture: str = "x86_64",
        analyzer: PalisadeAnalyzer | None = None,
        mode: str | None = None,
        policy_prefix: str | None = "/palisade/policies",
        environment: Mapping[str, str] | None = None,
        skip: Callable[[lambda_.Function], bool] | None = None,
    ) -> None:
        if (layer_zip is None) == (layer is None):
            raise ValueError("give exactly one of layer_zip (a built zip) or layer")
        if layer_zip is not None and not Path(layer_zip).is_file():
            raise FileNotFoundError(
                f"layer zip {str(layer_zip)!r} does not exist; build it with "
                "`palisade layer build` first"
            )
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, found {mode!r}")
        if architecture not in _ARCHES:
            raise ValueError(
                f"architecture must be one of {sorted(_ARCHES)}, found {architecture!r}"
            )
        self.layer_zip = str(layer_zip) if layer_zip is not None else None
        self.layer = layer
        self.runtime_name = f"python{python}"
        self.architecture = _ARCHES[architecture]
        self.analyzer = analyzer
        self.mode = mode
        self.policy_prefix = policy_prefix.rstrip("/") if policy_prefix else None
        self.environment = dict(environment or {})
        self.skip = skip
        self._layers: dict[str, lambda_.ILayerVersion] = {}
        self._seen: set[str] = set()
        self.protected: list[str] = []

    def visit(self, node: IConstruct) -> None:
        """Protect ``node`` when it is a Python zip function that needs it."""
        if not isinstance(node, lambda_.Function) or not self._wanted(node):
            return
        stack = cdk.Stack.of(node)
        path = node.node.path
        if path in self._seen:
            # CDK may visit a node again when the app is synthesised again.
            return
        self._seen.add(path)

        if node.runtime.name != self.runtime_name or (
            node.architecture.name != self.architecture.name
        ):
            cdk.Annotations.of(node).add_error(
                f"Palisade cannot protect {path}: it runs {node.runtime.name} on "
                f"{node.architecture.name}, the layer is for {self.runtime_name} on "
                f"{self.architecture.name}; build a layer for it (palisade layer "
                "build --python X.Y --arch A) and protect it with a second Aspect, "
                "or leave it out with skip="
            )
            return
        layers = stack.resolve(node.node.default_child.layers) or []  # type: ignore[union-attr]
        if len(layers) >= MAX_LAYERS:
            cdk.Annotations.of(node).add_error(
                f"Palisade cannot protect {path}: it already has {len(layers)} "
                f"layers and Lambda allows {MAX_LAYERS}; merge two of them or leave "
                "it out with skip="
            )
            return

        node.add_layers(self._layer_for(stack))
        for key, value in self._environment_for(node, stack).items():
            node.add_environment(key, value)
        self.protected.append(path)

    def _wanted(self, function: lambda_.Function) -> bool:
        if function.runtime.family != lambda_.RuntimeFamily.PYTHON:
            return False  # container images (FROM_IMAGE), Node, Java, ...
        if any(isinstance(scope, PalisadeAnalyzer) for scope in function.node.scopes):
            return False
        return not (self.skip is not None and self.skip(function))

    def _layer_for(self, stack: cdk.Stack) -> lambda_.ILayerVersion:
        """The stack's Palisade layer: made on first use, then shared."""
        if self.layer is not None:
            return self.layer
        key = stack.node.path
        if key not in self._layers:
            existing = stack.node.try_find_child("PalisadeLayer")
            if isinstance(existing, lambda_.LayerVersion):
                self._layers[key] = existing
            else:
                self._layers[key] = lambda_.LayerVersion(
                    stack,
                    "PalisadeLayer",
                    code=lambda_.Code.from_asset(str(self.layer_zip)),
                    description="Palisade runtime protection",
                    compatible_runtimes=[_runtime(self.runtime_name)],
                    compatible_architectures=[self.architecture],
                    license="Apache-2.0",
                )
        return self._layers[key]

    def _environment_for(
        self, function: lambda_.Function, stack: cdk.Stack
    ) -> dict[str, str]:
        env: dict[str, str] = {"AWS_LAMBDA_EXEC_WRAPPER": WRAPPER}
        if self.mode:
            env["PALISADE_MODE"] = self.mode
        if self.policy_prefix:
            name = _policy_name(function, stack)
            parameter = f"{self.policy_prefix}/{name}"
            # The layer asks the extension, which reads the policy from SSM.
            env["PALISADE_POLICY"] = "extension"
            env["PALISADE_EXTENSION_POLICY"] = f"ssm:{parameter}"
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["ssm:GetParameter"],
                    resources=[
                        stack.format_arn(
                            service="ssm",
                            resource="parameter",
                            resource_name=parameter.lstrip("/"),
                        )
                    ],
                )
            )
        if self.analyzer is not None:
            env["PALISADE_SINK"] = "kinesis"
            env["PALISADE_STREAM_NAME"] = self.analyzer.stream.stream_name
            # Stream messages are signed envelopes; the analyzer refuses others.
            env["PALISADE_ANALYZER_KEY"] = self.analyzer.signing_key
            self.analyzer.stream.grant_write(function)
        env.update(self.environment)
        return env


def _runtime(name: str) -> lambda_.Runtime:
    """CDK's own Runtime object for ``pythonX.Y`` (it compares them by value)."""
    constant = getattr(
        lambda_.Runtime,
        name.upper().replace("PYTHON", "PYTHON_").replace(".", "_"),
        None,
    )
    if isinstance(constant, lambda_.Runtime):
        return constant
    return lambda_.Runtime(name, lambda_.RuntimeFamily.PYTHON)


def _policy_name(function: lambda_.Function, stack: cdk.Stack) -> str:
    """The function's name when set in code, else a stable name from its path."""
    cfn: Any = function.node.default_child
    explicit = stack.resolve(cfn.function_name)
    if isinstance(explicit, str):
        return explicit
    return cdk.Names.unique_resource_name(function, max_length=64, separator="-")
