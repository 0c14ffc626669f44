"""Bounded memo dicts for the hot path's conversions: parsed prices and quantities, their
texts and their packed msgpack pieces. The flow meets the same few values again and
again, so a dict hit replaces the work; each cache is cleared when it is full, which
bounds memory whatever clients send."""

from __future__ import annotations

from typing import TypeVar

CACHE_ENTRIES = 1 << 16  # entries kept per cache

K = TypeVar("K")
V = TypeVar("V")


def remember(cache: dict[K, V], key: K, value: V) -> V:
    """Store `value` under `key` and return it, clearing `cache` first when it is full."""
    if len(cache) >= CACHE_ENTRIES:
        cache.clear()
    cache[key] = value
    return value
