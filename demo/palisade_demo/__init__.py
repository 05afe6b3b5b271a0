"""Palisade's end-to-end demo: three realistic functions, learned, then attacked.

    python -m palisade_cli.main demo      # or: make demo

See ``docs/demo.md``. The pieces: ``functions/`` (the protected functions' code),
``events`` (benign traffic), ``attacks`` (what is replayed), ``standins`` (the
outside world on loopback), ``netns`` (the private network), ``scenario`` (the
runner), ``report`` (text and HTML).
"""
