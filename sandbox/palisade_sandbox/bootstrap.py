"""The sandbox's runtime bootstrap: what Lambda's ``/var/runtime/bootstrap.py`` does.

Run as ``python <runtime dir>/bootstrap.py`` (after ``AWS_LAMBDA_EXEC_WRAPPER``, if
any, which may have changed ``_HANDLER``). It puts the task root and the layer's
Python folders on ``sys.path`` the way Lambda's Python runtime does (not through
``PYTHONPATH``, which would leak into the function's subprocesses), then hands over
to the real ``awslambdaric`` client, which imports the handler and serves the
Runtime API at ``AWS_LAMBDA_RUNTIME_API``.

This file is copied into the sandbox's runtime directory; it imports nothing from
``palisade_sandbox``.
"""

from __future__ import annotations

import os
import sys


def _sys_path() -> list[str]:
    """Lambda's order: task root, layer site-packages, layer python, runtime dir,
    then the interpreter's own paths."""
    task = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    runtime = os.environ.get("LAMBDA_RUNTIME_DIR", os.path.dirname(__file__))
    opt = os.environ.get("PALISADE_OPT_DIR", "/opt")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    first = [
        task,
        os.path.join(opt, "python", "lib", version, "site-packages"),
        os.path.join(opt, "python"),
        runtime,
    ]
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if p not in first and os.path.abspath(p or ".") != here]
    return first + rest


def main() -> None:
    """Serve invocations until the process is stopped."""
    sys.path[:] = _sys_path()
    from awslambdaric import bootstrap
    from awslambdaric.lambda_config import LambdaConfigProvider
    from awslambdaric.lambda_runtime_client import LambdaRuntimeClient

    handler = os.environ["_HANDLER"]
    config = LambdaConfigProvider(["bootstrap", handler])
    client = LambdaRuntimeClient(config.api_address, config.use_thread_polling)
    os.chdir(os.environ.get("LAMBDA_TASK_ROOT", "/var/task"))
    bootstrap.run(handler, client)


if __name__ == "__main__":
    main()
