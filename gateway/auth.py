"""Who is asking: API keys -> accounts, and per-key token-bucket rate limits.

Auth is off when the configuration has no API keys (allowed on loopback only, see
gateway/server.py): a request then names its `account` itself (JSON body for POST, query
parameter for GET; default `anonymous`). With keys, every order endpoint needs an
`X-API-Key` header; the key decides the account, and a request that names a different
account is refused with 401 (naming the key's own account is allowed). Market data is
public and needs no key.

Rate limits apply only to keys that configure `rate_limit` (tokens per second) and
`burst` (bucket size; default: the rate rounded up, at least 1). A refused request gets
429 `rate_limited` with a Retry-After header in whole seconds.
"""

from __future__ import annotations

import math
import time

from gateway.errors import ApiError
from matcher.protocol import ANONYMOUS, Code
from matcher.system import ApiKey


class TokenBucket:
    """`rate` tokens per second up to `capacity`; each request takes one. O(1) per call."""

    __slots__ = ("rate", "capacity", "tokens", "updated")

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = time.monotonic()

    def take(self, now: float | None = None) -> float:
        """0.0 if a token was taken, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


class Accounts:
    """Resolves the account of a request from its key (auth on) or its own claim (auth off)."""

    def __init__(self, api_keys: dict[str, ApiKey]) -> None:
        self.keys = dict(api_keys)
        self.enabled = bool(api_keys)
        self.buckets: dict[str, TokenBucket] = {}
        for key, entry in api_keys.items():
            if entry.rate_limit is not None and entry.rate_limit > 0:
                burst = entry.burst if entry.burst else max(1, math.ceil(entry.rate_limit))
                self.buckets[key] = TokenBucket(entry.rate_limit, float(burst))

    def authenticate(self, api_key: str | None) -> str | None:
        """The key's account (None when auth is off); ApiError 401 or 429 if it may not act.

        Called before the body is read, so a refused request costs little.
        """
        if not self.enabled:
            return None
        if api_key is None:
            raise ApiError(Code.UNAUTHORIZED, "an X-API-Key header is required")
        entry = self.keys.get(api_key)
        if entry is None:
            raise ApiError(Code.UNAUTHORIZED, "unknown API key")
        bucket = self.buckets.get(api_key)
        if bucket is not None:
            wait = bucket.take()
            if wait:
                raise ApiError(
                    Code.RATE_LIMITED,
                    f"rate limit of {bucket.rate:g} requests/s (burst {bucket.capacity:g}) "
                    f"exceeded; retry in {wait:.3f}s",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        return entry.account

    def resolve(self, key_account: str | None, claimed: str | None) -> str:
        """The account a request acts for, from its key's account and the one it names."""
        if key_account is None:  # auth off: the request names its account
            return claimed if claimed is not None else ANONYMOUS
        if claimed is not None and claimed != key_account:
            raise ApiError(
                Code.UNAUTHORIZED,
                "this API key does not trade for the account named in the request",
            )
        return key_account
