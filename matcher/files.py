"""Small filesystem helpers shared by the journal, the snapshots, the matcher and the
benchmarks (no msgpack, no state): folder fsync, numbered files, the folder lock."""

from __future__ import annotations

import fcntl
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
    return {
        "p50_us": samples[len(samples) // 2] * 1e6,
        "p99_us": samples[int(len(samples) * 0.99)] * 1e6,
    }


LOCK_NAME = "matcher.lock"


class FolderLocked(Exception):
    """Another live process holds the folder's lock: names the folder and its PID."""

    def __init__(self, folder: Path, holder: str) -> None:
        self.folder = folder
        self.holder = holder
        super().__init__(
            f"{folder} is locked by another matcher (PID {holder}): one process per "
            f"symbol folder; stop that one first"
        )


class FolderLock:
    """An exclusive lock on a folder for the life of this process (docs/operations.md).

    A POSIX record lock (fcntl.lockf) on `<folder>/matcher.lock`, which holds the owner's
    PID. The kernel releases it when the process dies, even by SIGKILL. POSIX, not flock:
    a forked child (the snapshot writer) never holds it, so a matcher killed while its
    child still writes a snapshot can be restarted at once. The catch of POSIX locks,
    that closing *any* descriptor of the file releases them, is why nothing else in the
    process opens this file.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise FolderLocked; creates the folder if needed."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise FolderLocked(self.folder, holder) from None
        self._fd = fd
        pid = f"{os.getpid()}\n".encode()
        try:
            # Over the old bytes, then cut: no new block needed, so a full disk cannot
            # stop a start here (the matcher serves reads when its journal is full).
            os.pwrite(fd, pid, 0)
            os.ftruncate(fd, len(pid))
        except OSError:
            pass  # the lock holds anyway; a refused second matcher then says "unknown"

    def release(self) -> None:
        """Drop the lock (idempotent). The PID stays in the file: it is only read while
        the lock is held."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
