"""The one exception the benchmark harness raises for a figure it cannot take."""

from __future__ import annotations


class BenchError(RuntimeError):
    """A measurement could not be taken; the message says why and what to do.

    The runner catches it per figure and reports that figure as not measured with
    this message as the reason, so one missing component never hides the others.
    """
