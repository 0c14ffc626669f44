"""The public text forms the matcher formats itself (matcher/views.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from matcher.views import iso_timestamp

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LAST_MICROSECOND_OF_9999 = 253_402_300_799_999_999


def test_iso_timestamp_matches_datetime_to_the_microsecond() -> None:
    rng = random.Random(7)
    edges = [
        0,
        1,
        999_999,
        1_000_000,
        951_782_399_999_999,
        951_782_400_000_000,  # 2000-02-29
        1_700_000_000_000_000,
        LAST_MICROSECOND_OF_9999,
    ]
    samples = edges + [rng.randrange(LAST_MICROSECOND_OF_9999) for _ in range(20_000)]
    # Runs of nearby values too: the per-second cache must not leak into the next second.
    start = 1_764_158_399_999_990
    samples += list(range(start, start + 20)) + list(range(start + 20, start - 20, -3))
    for micros in samples:
        expected = (EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert iso_timestamp(micros) == expected, micros
