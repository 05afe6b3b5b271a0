"""Palisade's Lambda extension: gets every record out of the sandbox.

Run it with ``python -m palisade_extension --name NAME`` (the launcher in
``/opt/extensions`` does). The pieces, one module each: ``server`` (the layer's
Unix socket), ``collector`` (records joined with telemetry), ``spool``,
``shipper`` and ``sinks`` (delivery), ``outside`` (the /proc view),
``policy_source`` and ``extension`` (the lifecycle).
"""

from palisade_extension.extension import VERSION, Extension, run

__all__ = ["VERSION", "Extension", "run"]
