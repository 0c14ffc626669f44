"""The append-only journal of one symbol: segments, group commit, torn-tail repair, replay.

This module owns the journal's bytes on disk and nothing else: it takes and returns
opaque payloads (`matcher/codec.py` turns commands into payloads and back). It never
calls msgpack and knows nothing about books or commands.

On-disk format
--------------
A journal is one folder per symbol holding segment files named `<first_seq:020d>.log`,
where `first_seq` is the sequence number of the segment's first record, e.g.
`00000000000000000001.log`. Segments sort by name; files with other names are ignored
(so snapshots may share the folder). Each segment is a run of records, nothing else:

    offset  size  field
    0       4     length   u32 little-endian, length of payload, 1 .. 2**32-1
    4       4     crc32    u32 little-endian, zlib.crc32(payload)
    8       len   payload  the codec's bytes for one command

Empty payloads are refused, so a zero-filled tail (what a file system may leave after a
crash) never parses as records.

Durability
----------
`append` only buffers; `commit` writes the buffer with `os.write` and, under the fsync
policy, makes it durable before it returns (the matcher replies only after that):

    "always"  every `append` writes and fsyncs its record at once
    "batch"   one write + one fsync per `commit` (group commit, the default)
    "off"     `commit` writes but never fsyncs: a power loss may lose acknowledged records

A commit that fails (a full disk: ENOSPC, EDQUOT, EFBIG; or EIO) leaves the journal
failed; `rollback` then cuts every file back to the last successful `commit` (deleting
segments created since, truncating the one that was current) so that the disk holds
exactly what was durable before, and the journal takes appends again. `probe` tells when
the disk takes writes again (docs/operations.md, "Disk full").

A new segment is started before a record that would take the current one over
`segment_bytes`. The full segment is written and fsynced (under every policy) before the
next segment file is created, and the folder is fsynced after a segment file is created,
so every segment but the last is always complete.

Recovery
--------
`Journal.open` verifies every record of every segment. The only damage it repairs is a
torn tail of the last segment: a bad record (short header, short body or CRC mismatch)
after which no valid record starts at any offset. That tail is what a crash in the middle
of a write leaves; it was never committed, so it is cut with `os.ftruncate` and the cut
is logged. Any other damage, in an earlier segment or followed by a valid record, raises
`JournalCorrupt` naming the file and the offset of the first bad record; the operator
decides. (Consequence: a torn payload that itself contains the bytes of a whole valid
record also stops the start; that takes a crafted payload and a crash at that record.)
"""

from __future__ import annotations

import enum
import logging
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from matcher.files import fsync_directory, numbered_files

__all__ = [
    "FSYNC_POLICIES",
    "HEADER",
    "Journal",
    "JournalCorrupt",
    "SEGMENT_BYTES",
    "list_segments",
    "scan_segment",
    "segment_path",
    "verify",
]

FSYNC_POLICIES = ("always", "batch", "off")
SEGMENT_BYTES = 64 * 1024 * 1024  # a segment is closed and a new one started past this size

HEADER = struct.Struct("<II")  # length, crc32
HEADER_SIZE = HEADER.size
SEGMENT_NAME = re.compile(r"^(\d{20})\.log$")

_pack_header = HEADER.pack  # bound once: append() runs once per accepted command
_crc32 = zlib.crc32

_default_log = logging.getLogger(__name__).warning

PROBE_NAME = ".write-probe"  # not a segment name: never listed, never replayed
PROBE_BYTES = 64 * 1024


class JournalCorrupt(Exception):
    """Damage the journal must not repair by itself: names the file and the byte offset."""

    def __init__(self, path: str | Path, offset: int, reason: str = "bad record") -> None:
        self.path = str(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"journal corrupt: {self.path} at offset {offset}: {reason}")


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    FAILED = "failed"  # a write or fsync failed: what is on disk is unknown, restart
    CLOSED = "closed"


# An enum member is looked up through the class at ~0.3 us each time: the per-command
# paths (append, commit) compare against this module-level name instead.
_OPEN = _State.OPEN


def segment_path(directory: str | Path, first_seq: int) -> Path:
    """The path of the segment whose first record has sequence number `first_seq`."""
    return Path(directory) / f"{first_seq:020d}.log"


def list_segments(directory: str | Path) -> list[tuple[int, Path]]:
    """(first_seq, path) of every segment in `directory`, oldest first. O(files)."""
    return numbered_files(directory, SEGMENT_NAME)


def _scan(data: bytes) -> tuple[int, int, str]:
    """Walk the records of a segment's bytes. O(len(data)).

    Returns (valid records, offset where they end, why the walk stopped there); the
    reason is "" when the records end exactly at the end of `data`.
    """
    # Locals, not globals or attributes: this runs once per record of the whole history.
    # A bytes slice is cheaper than a memoryview slice for records this small.
    unpack_from = HEADER.unpack_from
    crc32 = zlib.crc32
    end = len(data)
    offset = 0
    count = 0
    while offset < end:
        if end - offset < HEADER_SIZE:
            return count, offset, f"short header ({end - offset} of {HEADER_SIZE} bytes)"
        length, crc = unpack_from(data, offset)
        body = offset + HEADER_SIZE
        stop = body + length
        if length == 0:
            return count, offset, "zero length"
        if stop > end:
            return count, offset, f"short body ({end - body} of {length} bytes)"
        if crc32(data[body:stop]) != crc:
            return count, offset, "crc mismatch"
        offset = stop
        count += 1
    return count, offset, ""


def _valid_record_after(data: bytes, start: int) -> int | None:
    """The first offset > `start` where a whole valid record begins, or None.

    Used only on damage, to tell a torn tail (nothing valid after it) from damage in the
    middle. O(len(data) - start) offsets; most are rejected by the length check alone.
    """
    end = len(data)
    if not data[start:].strip(b"\0"):  # a zero-filled tail: the common case, one pass
        return None
    unpack_from = HEADER.unpack_from
    crc32 = zlib.crc32
    view = memoryview(data)
    for offset in range(start + 1, end - HEADER_SIZE):
        length, crc = unpack_from(view, offset)
        body = offset + HEADER_SIZE
        if 0 < length <= end - body and crc32(view[body : body + length]) == crc:
            return offset
    return None


def scan_segment(path: str | Path) -> tuple[int, int]:
    """(valid records, bytes they span) of one segment; reads it whole. O(file size).

    Does not raise on damage: the span is shorter than the file when a bad record starts
    there. Use `verify` for a check that raises.
    """
    data = Path(path).read_bytes()
    count, valid_end, _ = _scan(data)
    return count, valid_end


def verify(directory: str | Path) -> int:
    """Check the length and CRC of every record of every segment; return how many. O(bytes).

    Read-only: unlike `Journal.open` it repairs nothing, so a torn tail is reported as a
    `JournalCorrupt` too (its reason says `open()` would cut it).
    """
    segments = list_segments(directory)
    total = 0
    for index, (_, path) in enumerate(segments):
        data = path.read_bytes()
        count, valid_end, reason = _scan(data)
        if reason:
            if index == len(segments) - 1 and _valid_record_after(data, valid_end) is None:
                reason = f"torn tail, {reason}; open() would cut {len(data) - valid_end} bytes"
            raise JournalCorrupt(path, valid_end, reason)
        total += count
    return total


def _write_all(fd: int, data: bytes | bytearray) -> None:
    """os.write until every byte is written (a regular file may take less at a time)."""
    written = os.write(fd, data)
    if written == len(data):
        return
    with memoryview(data) as view:
        while written < len(view):
            written += os.write(fd, view[written:])


class Journal:
    """The journal of one symbol: open (verify + repair), append, commit, replay, prune.

    Single-threaded, like the matcher loop that owns it. States: new -> open -> closed;
    a failed write or fsync moves it to failed, where only `rollback` (back to open, at
    the last commit) and `close` are allowed.
    """

    def __init__(
        self,
        directory: str | Path,
        fsync: str = "batch",
        segment_bytes: int = SEGMENT_BYTES,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {FSYNC_POLICIES}, got {fsync!r}")
        if segment_bytes <= HEADER_SIZE:
            raise ValueError(f"segment_bytes must be > {HEADER_SIZE}, got {segment_bytes}")
        self.directory = Path(directory)
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self._log = log if log is not None else _default_log
        self._state = _State.NEW
        self._always = fsync == "always"
        self._sync = fsync != "off"
        # The segment appends go to: its path (None until the first append when the
        # folder has none), its fd (None until its file exists), its size on disk plus
        # buffered bytes, and the first seq it may still accept.
        self._path: Path | None = None
        self._fd: int | None = None
        self._size = 0
        self._last_seq = -1
        # Records appended but not yet written, for the current segment...
        self._buffer = bytearray()
        self._buffered_records = 0
        # ...and for full segments rolled over since the last commit:
        # (path, fd or None, bytes, records), oldest first.
        self._sealed: list[tuple[Path, int | None, bytearray, int]] = []
        self._directory_dirty = False
        self._bytes_written = 0
        self._records_written = 0
        # Where the last successful `commit` left the disk, for `rollback`: the current
        # segment then (None: no segment yet), its size, the seq bound of `append`, and the
        # segment files created since.
        self._mark_path: Path | None = None
        self._mark_size = 0
        self._mark_last_seq = -1
        self._created: list[Path] = []
        self._unmarked = False  # written since the mark (under "always": by append)

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        """Create the folder if needed, verify every record, cut a torn tail. O(journal bytes).

        Raises JournalCorrupt on damage other than a torn tail of the last segment.
        """
        self._expect(_State.NEW, "open")
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            fsync_directory(self.directory.parent)
        segments = list_segments(self.directory)
        for index, (first_seq, path) in enumerate(segments):
            data = path.read_bytes()
            _, valid_end, reason = _scan(data)
            is_last = index == len(segments) - 1
            if reason and not is_last:
                raise JournalCorrupt(path, valid_end, f"{reason} (not the last segment)")
            if reason:
                later = _valid_record_after(data, valid_end)
                if later is not None:
                    raise JournalCorrupt(
                        path, valid_end, f"{reason}, with a valid record after it at {later}"
                    )
                self._cut_tail(path, valid_end, len(data), reason)
            if is_last:
                self._adopt_last_segment(first_seq, path, valid_end)
        self._mark()
        self._state = _State.OPEN

    def _cut_tail(self, path: Path, valid_end: int, size: int, reason: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, valid_end)
            os.fsync(fd)  # under every policy: the repair must not come undone
        finally:
            os.close(fd)
        self._log(
            f"journal: cut torn tail of {path} at offset {valid_end}: "
            f"{size - valid_end} bytes ({reason})"
        )

    def _adopt_last_segment(self, first_seq: int, path: Path, size: int) -> None:
        if size == 0:
            # Only a crash between creating a segment and writing it leaves an empty one
            # (or a cut that took its only record). Its name may not match the seq of the
            # next append, so drop it; the next append starts a segment afresh.
            path.unlink()
            fsync_directory(self.directory)
            self._log(f"journal: removed empty last segment {path}")
            self._last_seq = first_seq - 1
            return
        self._path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._size = size
        self._last_seq = first_seq

    def close(self) -> None:
        """Commit what is buffered and close the files. Idempotent. Cost of one commit."""
        if self._state is _State.OPEN:
            self.commit()
        for _, fd, _, _ in self._sealed:
            if fd is not None:
                os.close(fd)
        self._sealed.clear()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._state = _State.CLOSED

    def _expect(self, state: _State, action: str) -> None:
        if self._state is not state:
            raise RuntimeError(
                f"cannot {action} a journal that is {self._state.value}; "
                f"expected {state.value} ({self.directory})"
            )

    # -- writing -------------------------------------------------------------------------

    def append(self, seq: int, payload: bytes) -> None:
        """Buffer one record; `commit` makes it durable. O(len(payload)), no I/O.

        `seq` must increase from call to call; it names the segment the record starts.
        Under fsync="always" the record is written and fsynced before this returns.
        """
        if self._state is not _OPEN:
            self._expect(_OPEN, "append to")
        if seq <= self._last_seq:
            raise ValueError(f"seq must increase: got {seq} after {self._last_seq}")
        length = len(payload)
        if length == 0:
            raise ValueError("empty payloads are not journaled")
        record_size = HEADER_SIZE + length
        if self._path is None:
            self._start_segment(seq)
        elif self._size and self._size + record_size > self.segment_bytes:
            self._roll(seq)
        buffer = self._buffer
        buffer += _pack_header(length, _crc32(payload))
        buffer += payload
        self._size += record_size
        self._buffered_records += 1
        self._last_seq = seq
        if self._always:
            self._flush()

    def _start_segment(self, seq: int) -> None:
        self._path = segment_path(self.directory, seq)
        self._fd = None  # created by the next commit
        self._size = 0

    def _roll(self, seq: int) -> None:
        assert self._path is not None
        self._sealed.append((self._path, self._fd, self._buffer, self._buffered_records))
        self._buffer = bytearray()
        self._buffered_records = 0
        self._start_segment(seq)

    def commit(self) -> None:
        """Write every buffered record and make it durable under the fsync policy.

        One os.write (+ one fsync under "batch") per segment touched, plus a folder fsync
        when a segment file was created. After it returns, nothing appended is lost by a
        crash (by a power loss too, unless the policy is "off").
        """
        if self._state is not _OPEN:
            self._expect(_OPEN, "commit")
        if self._buffered_records or self._sealed:
            self._flush()
        if self._unmarked:  # an empty commit (most of a query-only batch) costs no more
            self._mark()

    def _mark(self) -> None:
        """Remember the disk as it is now as the point `rollback` returns to. O(1)."""
        self._mark_path = self._path
        self._mark_size = self._size
        self._mark_last_seq = self._last_seq
        self._unmarked = False
        if self._created:
            self._created = []

    def _flush(self) -> None:
        """Write and sync what is buffered (the body of `commit`; under fsync="always",
        of every `append`, whose records `rollback` still drops up to the last commit)."""
        self._unmarked = True
        try:
            # Earlier segments first, each complete and durable before the next file
            # exists: so only the last segment can ever have a torn tail.
            while self._sealed:
                path, fd, data, records = self._sealed[0]
                if fd is None:
                    fd = self._create(path)
                    self._sealed[0] = (path, fd, data, records)
                self._write(fd, data, records)
                os.fsync(fd)  # under every policy, once per segment: see module docstring
                if self._directory_dirty:
                    fsync_directory(self.directory)
                    self._directory_dirty = False
                os.close(fd)
                del self._sealed[0]
            if self._buffered_records:
                assert self._path is not None
                if self._fd is None:
                    self._fd = self._create(self._path)
                self._write(self._fd, self._buffer, self._buffered_records)
                self._buffer = bytearray()
                self._buffered_records = 0
                if self._sync:
                    os.fsync(self._fd)
            if self._directory_dirty and self._sync:
                fsync_directory(self.directory)
                self._directory_dirty = False
        except BaseException:
            # What reached the disk is unknown; retrying could write records twice.
            self._state = _State.FAILED
            raise

    def _create(self, path: Path) -> int:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        fd = os.open(path, flags, 0o644)
        self._created.append(path)
        self._directory_dirty = True
        return fd

    def rollback(self) -> None:
        """After a failed commit (or append under "always"): forget every record since the
        last successful `commit`, in memory and on disk, and take appends again.

        Deletes the segment files created since, truncates the segment that was current
        then back to its size then and fsyncs it, so a restart replays exactly what was
        committed. O(files created since). An OSError here leaves the journal failed: what
        is on disk is then unknown (the caller stops; `open` at the next start decides).
        """
        if self._state is not _State.FAILED and self._state is not _OPEN:
            self._expect(_OPEN, "roll back")
        self._state = _State.FAILED
        for _, fd, _, _ in self._sealed:
            if fd is not None:
                os.close(fd)
        self._sealed.clear()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for path in self._created:
            path.unlink(missing_ok=True)
        if self._created:
            fsync_directory(self.directory)
            self._created = []
        self._buffer = bytearray()
        self._buffered_records = 0
        self._directory_dirty = False
        self._path = self._mark_path
        self._size = self._mark_size
        self._last_seq = self._mark_last_seq
        if self._path is not None:
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            try:
                os.ftruncate(fd, self._size)  # frees space: works on a full disk
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        self._state = _OPEN

    def probe(self, size: int = PROBE_BYTES) -> None:
        """Write `size` bytes to a scratch file of the folder, fsync, delete it: raises the
        OSError while the disk cannot take them. O(size), touches no segment."""
        path = self.directory / PROBE_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            _write_all(fd, bytes(size))
            os.fsync(fd)
        finally:
            os.close(fd)
            path.unlink(missing_ok=True)

    def _write(self, fd: int, data: bytearray, records: int) -> None:
        _write_all(fd, data)
        self._bytes_written += len(data)
        self._records_written += records

    # -- reading and housekeeping ---------------------------------------------------------

    def records(self, after_seq: int = 0) -> Iterator[bytes]:
        """Yield committed payloads in order, from the segment that holds `after_seq + 1`.

        Starts at the newest segment whose first seq is <= after_seq + 1 (the oldest one
        when none is); the caller skips records with seq <= after_seq itself, and checks
        that the first seq it keeps is the one it expects. Reads each segment whole and
        checks every CRC: O(bytes), over 1M small records/s. Raises JournalCorrupt on
        damage, including a torn tail `open` has not cut yet.
        """
        segments = list_segments(self.directory)
        start = 0
        for index, (first_seq, _) in enumerate(segments):
            if first_seq <= after_seq + 1:
                start = index
        for _, path in segments[start:]:
            yield from _iter_segment(path)

    def segments(self) -> list[tuple[int, Path]]:
        """(first_seq, path) of the segment files on disk, oldest first. O(files)."""
        return list_segments(self.directory)

    def prune(self, before_seq: int) -> list[Path]:
        """Delete the segments holding only records with seq < before_seq; return them.

        A segment qualifies when the next segment's first seq is <= before_seq; the last
        segment never does. Commits buffered records first. O(files).
        """
        if self._state is _State.OPEN:
            self.commit()
        segments = list_segments(self.directory)
        deleted = []
        for (_, path), (next_first_seq, _) in zip(segments, segments[1:], strict=False):
            if next_first_seq > before_seq:
                break
            path.unlink()
            deleted.append(path)
        if deleted and self._sync:
            fsync_directory(self.directory)
        return deleted

    @property
    def bytes_written(self) -> int:
        """Bytes this instance has written to segment files (headers included)."""
        return self._bytes_written

    @property
    def records_written(self) -> int:
        """Records this instance has written to segment files."""
        return self._records_written


def _iter_segment(path: Path) -> Iterator[bytes]:
    """The payloads of one segment, CRC-checked. One read; O(file size)."""
    data = path.read_bytes()
    # Hot loop of replay: locals for everything, unpack_from over the one buffer, one
    # bytes slice per payload (crc32 runs over that slice, no second copy).
    unpack_from = HEADER.unpack_from
    crc32 = zlib.crc32
    end = len(data)
    offset = 0
    while offset < end:
        if end - offset < HEADER_SIZE:
            raise JournalCorrupt(path, offset, f"short header ({end - offset} bytes)")
        length, crc = unpack_from(data, offset)
        body = offset + HEADER_SIZE
        stop = body + length
        if length == 0 or stop > end:
            raise JournalCorrupt(path, offset, f"bad length {length}")
        payload = data[body:stop]
        if crc32(payload) != crc:
            raise JournalCorrupt(path, offset, "crc mismatch")
        yield payload
        offset = stop
