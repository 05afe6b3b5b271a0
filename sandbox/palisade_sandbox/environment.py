"""The environment variables a sandboxed function and its extensions see.

The function gets Lambda's reserved variables (``_HANDLER``, ``LAMBDA_TASK_ROOT``,
``AWS_LAMBDA_FUNCTION_*``, fake credentials, ...) pointing at the sandbox's paths,
the sandbox's own path variables, then the user's variables on top. Extensions get
the same minus the variables Lambda withholds from them.

Nothing from the developer's own environment is inherited, so no real AWS
credential or profile can reach the function.
"""

from __future__ import annotations

import datetime
import os
import secrets
import sys
from dataclasses import dataclass

from .layout import Layout

# Lambda does not give these to extensions (Lambda Extensions API, "environment").
EXTENSION_WITHHELD = (
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_XRAY_CONTEXT_MISSING",
    "AWS_XRAY_DAEMON_ADDRESS",
    "LAMBDA_RUNTIME_DIR",
    "LAMBDA_TASK_ROOT",
    "_AWS_XRAY_DAEMON_ADDRESS",
    "_AWS_XRAY_DAEMON_PORT",
    "_HANDLER",
)
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
}
# An address on loopback where nothing listens, for when no moto endpoint is given:
# an AWS call then fails fast instead of reaching AWS.
NO_AWS_ENDPOINT = "http://127.0.0.1:9"


@dataclass
class FunctionConfig:
    """What Lambda knows about the function."""

    handler: str
    function_name: str = "palisade-sandbox"
    function_version: str = "$LATEST"
    memory_mb: int = 128
    timeout: float = 3.0
    region: str = "us-east-1"
    account_id: str = "123456789012"

    @property
    def arn(self) -> str:
        """The invoked function's ARN."""
        return (
            f"arn:aws:lambda:{self.region}:{self.account_id}:function:"
            f"{self.function_name}"
        )


def log_stream_name() -> str:
    """A log stream name in Lambda's ``YYYY/MM/DD/[$LATEST]<hex>`` form."""
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y/%m/%d")
    return f"{today}/[$LATEST]{secrets.token_hex(16)}"


def function_environment(
    config: FunctionConfig,
    layout: Layout,
    api_address: str,
    aws_endpoint: str | None,
    user_env: dict[str, str],
) -> dict[str, str]:
    """The runtime's environment (before any exec wrapper changes it)."""
    python_bin = os.path.dirname(sys.executable)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    env = {
        "PATH": os.pathsep.join(
            [python_bin, str(layout.opt / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]
        ),
        "LD_LIBRARY_PATH": os.pathsep.join(
            [str(layout.opt / "lib"), "/lib64", "/usr/lib64"]
        ),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "_HANDLER": config.handler,
        "LAMBDA_TASK_ROOT": str(layout.task),
        "LAMBDA_RUNTIME_DIR": str(layout.runtime),
        "AWS_LAMBDA_RUNTIME_API": api_address,
        "AWS_LAMBDA_FUNCTION_NAME": config.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": config.function_version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name(),
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{version}",
        "AWS_REGION": config.region,
        "AWS_DEFAULT_REGION": config.region,
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_ENDPOINT_URL": aws_endpoint or NO_AWS_ENDPOINT,
        **FAKE_CREDENTIALS,
        # The sandbox's stand-ins for /tmp and /opt.
        "TMPDIR": str(layout.tmp),
        "PALISADE_OPT_DIR": str(layout.opt),
        "PALISADE_EXTENSION_SOCKET": str(layout.tmp / "palisade" / "extension.sock"),
        "PALISADE_EXTENSION_KEY": str(layout.tmp / "palisade" / "extension.key"),
    }
    env.update(user_env)
    return env


def extension_environment(function_env: dict[str, str]) -> dict[str, str]:
    """The extensions' environment: the function's minus what Lambda withholds."""
    return {k: v for k, v in function_env.items() if k not in EXTENSION_WITHHELD}
