"""Small filesystem helpers shared by the journal and the snapshots (no msgpack, no state)."""

from __future__ import annotations

import os
import re
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
