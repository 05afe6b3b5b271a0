"""Trojaned versions of the functions' vendored dependencies (attack payloads).

Each file replaces one dependency's ``__init__.py`` in an attack deployment. It keeps
the real API working, as supply-chain malware does, and adds a payload. Values the
payload needs (marker paths, collection hosts) are written into the copy at deploy
time in place of ``@@NAME@@`` placeholders.
"""
