"""Small filesystem helpers shared by the journal, the snapshots and the benchmarks
(no msgpack, no state)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Make a file's creation, rename or removal in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def numbered_files(directory: str | Path, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    """(number, path) of the files whose name matches `pattern` (one group: the number),
    sorted by number; [] when the folder does not exist. O(files)."""
    folder = Path(directory)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        match = pattern.match(name)
        if match:
            found.append((int(match.group(1)), folder / name))
    found.sort()
    return found


def fsync_latency(folder: Path, count: int = 200) -> dict[str, float]:
    """p50/p99 in µs of appending 100 bytes and fsyncing them in `folder`: the floor of a
    journal commit on that disk (the journal appends and calls os.fsync the same way)."""
    path = folder / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    samples = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            os.write(fd, b"x" * 100)
            os.fsync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    samples.sort()
    return {"p50_us": samples[len(samples) // 2] * 1e6,
            "p99_us": samples[int(len(samples) * 0.99)] * 1e6}
