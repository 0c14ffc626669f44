"""Snapshots of one symbol's matcher state at a sequence number: write atomically, load.

This module owns the snapshot file format and nothing else: the body is opaque bytes
(the service encodes the book, pending stops, counters and recent trades with the
codec). Recovery = the newest valid snapshot + the journal records after its seq.

File format, one file per snapshot, named `snapshot-<seq:020d>.snap`:

    offset  size  field
    0       8     magic    b"MWSNAP01"
    8       8     seq      u64 little-endian, the last journal seq the state includes
    16      4     length   u32 little-endian, length of body
    20      4     crc32    u32 little-endian, zlib.crc32(body)
    24      len   body

A snapshot is written to a temporary file in the same folder (`.snapshot-*.tmp`),
fsynced, renamed over its final name with os.replace, and the folder is fsynced: a
crash leaves either the whole new snapshot or none (plus a temporary file, removed by
the next `load_latest`). A file that cannot be read (a directory in its place, EACCES,
EIO) or whose magic, seq, length or CRC does not check out is skipped with a log line
naming it and why, and the next older snapshot is tried; so is one whose body the caller
cannot decode (`valid_snapshots` goes on to the older ones).
"""

from __future__ import annotations

import logging
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from matcher.files import fsync_directory, numbered_files

__all__ = [
    "HEADER",
    "MAGIC",
    "list_snapshots",
    "load_latest",
    "snapshot_path",
    "valid_snapshots",
    "write_snapshot",
]

MAGIC = b"MWSNAP01"
HEADER = struct.Struct("<8sQII")  # magic, seq, length, crc32
SNAPSHOT_NAME = re.compile(r"^snapshot-(\d{20})\.snap$")
TEMP_PREFIX = ".snapshot-"
TEMP_SUFFIX = ".tmp"

_default_log = logging.getLogger(__name__).warning


def snapshot_path(directory: str | Path, seq: int) -> Path:
    """The final path of the snapshot taken at `seq`."""
    return Path(directory) / f"snapshot-{seq:020d}.snap"


def list_snapshots(directory: str | Path) -> list[tuple[int, Path]]:
    """(seq, path) of every snapshot file in `directory`, oldest first; valid or not. O(files)."""
    return numbered_files(directory, SNAPSHOT_NAME)


def write_snapshot(directory: str | Path, seq: int, body: bytes, keep: int = 2) -> Path:
    """Write the snapshot at `seq` atomically, then delete all but the newest `keep`.

    Cost: O(len(body)) plus two fsyncs of the file's folder and one of the file.
    Returns the snapshot's path.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    if not 0 <= seq < 2**64:
        raise ValueError(f"seq must fit in a u64, got {seq}")
    if len(body) >= 2**32:
        raise ValueError(f"body must be < 4 GiB, got {len(body)} bytes")
    folder = Path(directory)
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        fsync_directory(folder.parent)
    final = snapshot_path(folder, seq)
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as temp:
            temp.write(HEADER.pack(MAGIC, seq, len(body), zlib.crc32(body)))
            temp.write(body)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, final)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    fsync_directory(folder)
    older = list_snapshots(folder)[:-keep]
    for _, path in older:
        path.unlink()
    if older:
        fsync_directory(folder)
    return final


def load_latest(
    directory: str | Path, log: Callable[[str], None] | None = None
) -> tuple[int, bytes] | None:
    """(seq, body) of the newest valid snapshot, or None; removes leftover temp files.

    Invalid snapshots are skipped with a line to `log` (default: this module's logger)
    and left in place for inspection. Cost: reads the newest valid file whole, plus
    the invalid ones newer than it.
    """
    for seq, _, body in valid_snapshots(directory, log):
        return seq, body
    return None


def valid_snapshots(
    directory: str | Path, log: Callable[[str], None] | None = None
) -> Iterator[tuple[int, Path, bytes]]:
    """(seq, path, body) of each snapshot that reads and checks out, newest first; first
    removes leftover temp files. A caller that cannot decode a body takes the next one.

    Unreadable and invalid files are skipped with a line to `log` (default: this module's
    logger) naming the file and why, and left in place for inspection. Lazy: reads one
    file per step.
    """
    report = log if log is not None else _default_log
    folder = Path(directory)
    if not folder.is_dir():
        return
    for name in os.listdir(folder):
        if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
            # missing_ok: the snapshot child of a matcher killed just before may still
            # be running, and rename its temporary file meanwhile.
            try:
                (folder / name).unlink(missing_ok=True)
            except OSError as exc:  # e.g. a directory of that name: not ours to remove
                report(f"snapshot: cannot remove leftover {folder / name}: {exc.strerror}")
                continue
            report(f"snapshot: removed leftover temporary file {folder / name}")
    for seq, path in reversed(list_snapshots(folder)):
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # pruned meanwhile
            continue
        except OSError as exc:  # a directory in its place, EACCES, EIO...
            report(f"snapshot: skipping unreadable {path}: {exc.strerror or exc}")
            continue
        problem = _check(seq, data)
        if problem:
            report(f"snapshot: skipping invalid {path}: {problem}")
            continue
        yield seq, path, data[HEADER.size :]


def _check(seq: int, data: bytes) -> str:
    """Why `data` is not a valid snapshot taken at `seq`, or "" when it is."""
    if len(data) < HEADER.size:
        return f"short header ({len(data)} of {HEADER.size} bytes)"
    magic, header_seq, length, crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        return f"bad magic {magic!r}"
    if header_seq != seq:
        return f"header seq {header_seq} does not match the file name"
    if len(data) - HEADER.size != length:
        return f"body is {len(data) - HEADER.size} bytes, header says {length}"
    if zlib.crc32(memoryview(data)[HEADER.size :]) != crc:
        return "crc mismatch"
    return ""
