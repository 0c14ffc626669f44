"""How an error message quotes a value a client sent: `shown()`.

The matcher's own errors (codec, validation, engine, units, service) quote with it, and
the gateway and the feed hub use the same function for theirs, so every layer quotes a
bad value the same way (docs/architecture.md). It knows no HTTP: it only turns a value
into a short, safe piece of text.
"""

from __future__ import annotations

from typing import Any


def shown(value: Any, limit: int = 40) -> str:
    """`value` as an error message quotes it: a string's first `limit` characters, a
    number as it is, anything else by its type. Never the repr of a container: a deeply
    nested one raises RecursionError, and a huge one costs time."""
    if isinstance(value, str):
        return repr(value[:limit])
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return type(value).__name__
