"""The PalisadeProtection Aspect: what it changes, what it leaves, what it refuses."""

from __future__ import annotations

from typing import Any

from aws_cdk import assertions
from cdk_testkit import Synth

WRAPPER = "/opt/palisade-exec-wrapper"


def _functions(template: Any) -> dict[str, dict[str, Any]]:
    found = template.find_resources("AWS::Lambda::Function")
    return {name: resource["Properties"] for name, resource in found.items()}


def _named(template: Any, prefix: str) -> dict[str, Any]:
    matches = [p for n, p in _functions(template).items() if n.startswith(prefix)]
    assert len(matches) == 1, (prefix, list(_functions(template)))
    return matches[0]


def _layer_refs(props: dict[str, Any]) -> list[Any]:
    return props.get("Layers", [])


def test_python_functions_get_layer_wrapper_and_settings(synth: Synth) -> None:
    """Each Python 3.12 zip function gets the layer, the wrapper and PALISADE_*."""
    template = synth.workloads_template
    for prefix in ("PyOne", "PyTwo"):
        props = _named(template, prefix)
        env = props["Environment"]["Variables"]
        assert env["AWS_LAMBDA_EXEC_WRAPPER"] == WRAPPER
        assert env["PALISADE_MODE"] == "alert"
        assert env["PALISADE_SINK"] == "kinesis"
        assert "PALISADE_STREAM_NAME" in env
        assert "resolve:secretsmanager" in str(env["PALISADE_ANALYZER_KEY"])
        assert env["PALISADE_POLICY"] == "extension"
        assert env["PALISADE_EXTENSION_POLICY"].startswith("ssm:/palisade/policies/")
        layers = _layer_refs(props)
        assert len(layers) == 1 and "PalisadeLayer" in str(layers[0])


def test_one_layer_per_stack(synth: Synth) -> None:
    """The layer version is created once per stack and shared by its functions."""
    workloads = synth.workloads_template.find_resources("AWS::Lambda::LayerVersion")
    example = synth.example_template.find_resources("AWS::Lambda::LayerVersion")
    assert len(workloads) == 1 and len(example) == 1
    (layer,) = workloads.values()
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["x86_64"]
    one = _layer_refs(_named(synth.workloads_template, "PyOne"))
    two = _layer_refs(_named(synth.workloads_template, "PyTwo"))
    assert one == two


def test_container_image_and_node_are_untouched(synth: Synth) -> None:
    """Neither an image function nor a Node function gets a layer or the wrapper."""
    for prefix in ("Image", "Node"):
        props = _named(synth.workloads_template, prefix)
        assert "Layers" not in props
        env = props.get("Environment", {}).get("Variables", {})
        assert "AWS_LAMBDA_EXEC_WRAPPER" not in env
        assert not [k for k in env if k.startswith("PALISADE_")]


def test_five_layer_function_fails_clearly(synth: Synth) -> None:
    """A function at Lambda's layer limit is named in an error annotation."""
    annotations = assertions.Annotations.from_stack(synth.workloads)
    annotations.has_error(
        "/Workloads/Crowded",
        assertions.Match.string_like_regexp(
            r"cannot protect Workloads/Crowded: it already has 5 layers"
        ),
    )
    props = _named(synth.workloads_template, "Crowded")
    assert len(props["Layers"]) == 5
    assert "AWS_LAMBDA_EXEC_WRAPPER" not in props.get("Environment", {}).get(
        "Variables", {}
    )


def test_other_python_version_fails_clearly(synth: Synth) -> None:
    """A Python 3.11 function is refused: the layer's modules are for 3.12."""
    annotations = assertions.Annotations.from_stack(synth.workloads)
    annotations.has_error(
        "/Workloads/OldPython",
        assertions.Match.string_like_regexp(
            r"runs python3.11 .* layer is for python3.12"
        ),
    )
    assert "Layers" not in _named(synth.workloads_template, "OldPython")


def test_protected_functions_may_read_their_policy_and_ship(synth: Synth) -> None:
    """Each protected role gets ssm:GetParameter on its own parameter and PutRecords."""
    policies = synth.workloads_template.find_resources("AWS::IAM::Policy")
    statements = [
        s
        for policy in policies.values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    ssm = [s for s in statements if s["Action"] == "ssm:GetParameter"]
    assert len(ssm) == 2  # PyOne and PyTwo
    for statement in ssm:
        assert ":parameter/palisade/policies/Workloads-Py" in str(statement["Resource"])
    writes = [s for s in statements if "kinesis:PutRecords" in s["Action"]]
    assert len(writes) == 2


def test_explicit_function_name_names_the_policy(synth: Synth) -> None:
    """A function with a name in code reads ssm:/palisade/policies/<that name>."""
    props = _named(synth.example_template, "Named")
    env = props["Environment"]["Variables"]
    assert env["PALISADE_EXTENSION_POLICY"] == "ssm:/palisade/policies/orders-api"
    assert env["PALISADE_MODE"] == "block"


def test_analyzer_functions_are_not_protected(synth: Synth) -> None:
    """The analyzer's own functions stay unprotected (they would report on
    themselves in a loop)."""
    for name, props in _functions(synth.example_template).items():
        if name.startswith("Analyzer"):
            env = props["Environment"]["Variables"]
            assert "AWS_LAMBDA_EXEC_WRAPPER" not in env, name
            assert "Layers" not in props, name


def test_the_aspect_records_what_it_protected(synth: Synth) -> None:
    """The Aspect's own list matches what the template shows."""
    assert sorted(synth.protection.protected) == ["Workloads/PyOne", "Workloads/PyTwo"]
    assert sorted(synth.example.protection.protected) == [
        "Example/Named",
        "Example/Sample",
    ]
