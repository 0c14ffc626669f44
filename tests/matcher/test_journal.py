"""matcher/journal.py on real files: group commit, segments, torn-tail repair, damage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher.journal import (
    HEADER,
    SEGMENT_BYTES,
    Journal,
    JournalCorrupt,
    list_segments,
    scan_segment,
    verify,
)
from tests.support import REPO


def payload(seq: int, size: int = 20) -> bytes:
    """A payload that names its seq in its first 8 bytes, padded to `size`."""
    head = b"%08d" % seq
    return head + bytes((seq + i) % 251 for i in range(max(0, size - len(head))))


def seq_of(data: bytes) -> int:
    return int(data[:8])


def write_journal(
    directory: Path,
    count: int,
    *,
    size: int = 20,
    segment_bytes: int = SEGMENT_BYTES,
    fsync: str = "off",
) -> list[bytes]:
    journal = Journal(directory, fsync=fsync, segment_bytes=segment_bytes)
    journal.open()
    written = []
    for seq in range(1, count + 1):
        written.append(payload(seq, size))
        journal.append(seq, written[-1])
    journal.close()
    return written


def read_all(directory: Path, after_seq: int = 0) -> list[bytes]:
    journal = Journal(directory)
    journal.open()
    try:
        return list(journal.records(after_seq))
    finally:
        journal.close()


def record_offsets(payloads: list[bytes]) -> list[int]:
    offsets, offset = [], 0
    for data in payloads:
        offsets.append(offset)
        offset += HEADER.size + len(data)
    return offsets


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x41
    path.write_bytes(bytes(data))


# -- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["always", "batch", "off"])
def test_round_trip_under_each_fsync_policy(tmp_path: Path, policy: str) -> None:
    journal = Journal(tmp_path / "j", fsync=policy)
    journal.open()
    written = [payload(seq, 10 + seq % 50) for seq in range(1, 101)]
    for seq, data in enumerate(written, start=1):
        journal.append(seq, data)
        if seq % 7 == 0:
            journal.commit()
    journal.close()
    assert journal.records_written == 100
    assert journal.bytes_written == sum(HEADER.size + len(data) for data in written)

    assert read_all(tmp_path / "j") == written

    # Reopened, it appends after what is there, into the same segment.
    journal = Journal(tmp_path / "j", fsync=policy)
    journal.open()
    journal.append(101, payload(101))
    journal.close()
    assert read_all(tmp_path / "j") == [*written, payload(101)]
    assert len(list_segments(tmp_path / "j")) == 1


def test_unknown_fsync_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync policy"):
        Journal(tmp_path, fsync="sometimes")


def test_misuse_raises(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    with pytest.raises(RuntimeError, match="new; expected open"):
        journal.append(1, b"x")
    journal.open()
    with pytest.raises(RuntimeError, match="open; expected new"):
        journal.open()
    with pytest.raises(ValueError, match="empty"):
        journal.append(1, b"")
    journal.append(5, b"x")
    with pytest.raises(ValueError, match="seq must increase"):
        journal.append(5, b"y")
    journal.close()
    journal.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed; expected open"):
        journal.append(6, b"z")
    assert read_all(tmp_path / "j") == [b"x"]


def test_open_creates_the_folder_and_the_first_segment_lazily(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "BTC-USDT"
    journal = Journal(folder)
    journal.open()
    assert folder.is_dir()
    assert list_segments(folder) == []
    journal.append(42, b"first")
    journal.commit()
    assert journal.segments() == [(42, folder / "00000000000000000042.log")]
    journal.close()


def test_appended_records_reach_the_file_only_at_commit(tmp_path: Path) -> None:
    journal = Journal(tmp_path, fsync="batch")
    journal.open()
    journal.append(1, payload(1))
    segment = tmp_path / "00000000000000000001.log"
    assert not segment.exists()  # not even created before the commit

    journal.commit()
    committed = segment.read_bytes()
    assert committed == HEADER.pack(20, zlib.crc32(payload(1))) + payload(1)

    journal.append(2, payload(2))
    journal.append(3, payload(3))
    assert segment.read_bytes() == committed  # read through another handle
    journal.commit()
    assert scan_segment(segment) == (3, 3 * 28)
    journal.close()


def test_a_crash_loses_only_the_uncommitted_tail(tmp_path: Path) -> None:
    # A real process that commits two records, buffers a third and dies without close().
    script = (
        "import os, sys\n"
        "from matcher.journal import Journal\n"
        "journal = Journal(sys.argv[1], fsync='batch')\n"
        "journal.open()\n"
        "journal.append(1, b'one')\n"
        "journal.append(2, b'two')\n"
        "journal.commit()\n"
        "journal.append(3, b'three')\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, check=True)
    assert read_all(tmp_path) == [b"one", b"two"]


def test_a_failed_commit_leaves_the_journal_failed(tmp_path: Path) -> None:
    folder = tmp_path / "j"
    journal = Journal(folder, fsync="batch")
    journal.open()
    journal.append(1, b"one")
    shutil.rmtree(folder)  # the segment file cannot be created now
    with pytest.raises(FileNotFoundError):
        journal.commit()
    with pytest.raises(RuntimeError, match="failed; expected open"):
        journal.append(2, b"two")
    with pytest.raises(RuntimeError, match="failed; expected open"):
        journal.commit()  # a retry could write records twice
    journal.close()


@pytest.mark.parametrize("policy", ["batch", "always"])
def test_rollback_after_a_failed_write_restores_the_last_commit(
    tmp_path: Path, policy: str
) -> None:
    """A real EFBIG (RLIMIT_FSIZE) in the middle of a commit that spans two segments: the
    first got a record, the second was created. rollback() cuts the first back, deletes
    the second, and the journal takes appends again from the same seq."""
    script = (
        "import resource, sys\n"
        "from matcher.journal import Journal\n"
        f"journal = Journal(sys.argv[1], fsync={policy!r}, segment_bytes=100)\n"
        "journal.open()\n"
        "journal.append(1, b'one')\n"
        "journal.append(2, b'two')\n"
        "journal.commit()\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))\n"
        "try:\n"
        "    journal.append(3, b'three')\n"
        "    journal.append(4, b'x' * 300)  # rolls: a segment of its own, over the limit\n"
        "    journal.commit()\n"
        "except OSError as exc:\n"
        "    print('failed:', exc.strerror)\n"
        "journal.rollback()\n"
        "journal.append(3, b'three again')\n"
        "journal.commit()\n"
        "journal.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "failed: File too large" in done.stdout
    assert read_all(tmp_path) == [b"one", b"two", b"three again"]
    assert [first for first, _ in list_segments(tmp_path)] == [1]
    verify(tmp_path)


def test_rollback_of_a_journal_with_no_segment_yet(tmp_path: Path) -> None:
    journal = Journal(tmp_path, fsync="always")
    journal.open()
    journal.append(1, b"one")  # written at once under "always"
    journal.rollback()  # back to before it: no segment at all
    assert list_segments(tmp_path) == []
    journal.append(1, b"uno")
    journal.commit()
    journal.close()
    assert read_all(tmp_path) == [b"uno"]


def test_probe_writes_and_removes_a_scratch_file(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    journal.probe()
    assert os.listdir(tmp_path) == []
    script = (
        "import resource, sys\n"
        "from matcher.journal import Journal\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
        "journal = Journal(sys.argv[1])\n"
        "journal.open()\n"
        "try:\n"
        "    journal.probe()\n"
        "except OSError as exc:\n"
        "    print('refused:', exc.strerror)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "refused: File too large" in done.stdout, done.stderr
    assert os.listdir(tmp_path) == []  # the scratch file is gone even then
    journal.close()


# -- segments --------------------------------------------------------------------------


def test_segments_roll_before_a_record_would_exceed_the_limit(tmp_path: Path) -> None:
    # 28-byte records, 100-byte segments: three records fit, the fourth starts a new one.
    written = write_journal(tmp_path, 10, size=20, segment_bytes=100)
    segments = list_segments(tmp_path)
    assert [first for first, _ in segments] == [1, 4, 7, 10]
    assert [path.stat().st_size for _, path in segments] == [84, 84, 84, 28]
    assert [path.name for _, path in segments][1] == "00000000000000000004.log"
    assert read_all(tmp_path) == written
    assert verify(tmp_path) == 10


def test_a_record_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    journal = Journal(tmp_path, fsync="batch", segment_bytes=64)
    journal.open()
    journal.append(1, b"a" * 10)
    journal.append(2, b"b" * 200)
    journal.append(3, b"c" * 10)
    journal.close()
    sizes = [path.stat().st_size for _, path in list_segments(tmp_path)]
    assert sizes == [18, 208, 18]
    assert read_all(tmp_path) == [b"a" * 10, b"b" * 200, b"c" * 10]


def test_one_commit_can_span_several_segments(tmp_path: Path) -> None:
    journal = Journal(tmp_path, fsync="batch", segment_bytes=100)
    journal.open()
    written = [payload(seq) for seq in range(1, 11)]
    for seq, data in enumerate(written, start=1):
        journal.append(seq, data)
    assert list_segments(tmp_path) == []
    journal.commit()
    assert [first for first, _ in journal.segments()] == [1, 4, 7, 10]
    journal.close()
    assert read_all(tmp_path) == written


def test_reopened_journal_rolls_a_full_last_segment(tmp_path: Path) -> None:
    write_journal(tmp_path, 3, size=20, segment_bytes=100)
    journal = Journal(tmp_path, segment_bytes=100)
    journal.open()
    journal.append(4, payload(4))
    journal.close()
    assert [first for first, _ in list_segments(tmp_path)] == [1, 4]


@pytest.mark.parametrize(
    ("after_seq", "first_yielded"),
    [(0, 1), (1, 1), (2, 1), (3, 4), (4, 4), (5, 4), (6, 7), (9, 10), (10, 10), (99, 10)],
)
def test_records_after_seq_start_at_the_segment_that_holds_the_next_seq(
    tmp_path: Path, after_seq: int, first_yielded: int
) -> None:
    write_journal(tmp_path, 10, size=20, segment_bytes=100)  # segments 1, 4, 7, 10
    seqs = [seq_of(data) for data in read_all(tmp_path, after_seq)]
    assert seqs == list(range(first_yielded, 11))


def test_prune_deletes_only_segments_wholly_before_the_seq(tmp_path: Path) -> None:
    write_journal(tmp_path, 10, size=20, segment_bytes=100)  # segments 1, 4, 7, 10
    journal = Journal(tmp_path, segment_bytes=100)
    journal.open()
    assert journal.prune(1) == []
    assert journal.prune(6) == [tmp_path / "00000000000000000001.log"]  # 4..6 still needed
    assert journal.prune(7) == [tmp_path / "00000000000000000004.log"]
    assert [first for first, _ in journal.segments()] == [7, 10]
    assert [seq_of(data) for data in journal.records(6)] == [7, 8, 9, 10]

    assert journal.prune(10**9) == [tmp_path / "00000000000000000007.log"]
    assert [first for first, _ in journal.segments()] == [10]  # never the last one
    journal.append(11, payload(11))
    journal.close()
    assert [seq_of(data) for data in read_all(tmp_path)] == [10, 11]


# -- torn tails ------------------------------------------------------------------------


def test_every_cut_inside_the_last_record_is_repaired(tmp_path: Path) -> None:
    original = tmp_path / "original"
    written = write_journal(original, 5, size=23)
    ((first_seq, source),) = list_segments(original)
    last_start = record_offsets(written)[-1]
    size = source.stat().st_size

    for cut in range(last_start, size):
        folder = tmp_path / f"cut-{cut}"
        shutil.copytree(original, folder)
        segment = folder / source.name
        os.truncate(segment, cut)

        lines: list[str] = []
        journal = Journal(folder, fsync="batch", log=lines.append)
        journal.open()
        if cut == last_start:
            assert lines == []  # a clean end: nothing to repair
        else:
            assert len(lines) == 1
            assert lines[0].startswith(
                f"journal: cut torn tail of {segment} at offset {last_start}: "
                f"{cut - last_start} bytes ("
            )
        assert segment.stat().st_size == last_start
        assert list(journal.records()) == written[:4]

        journal.append(5, b"again")
        journal.close()
        assert read_all(folder) == [*written[:4], b"again"]
        shutil.rmtree(folder)


def test_a_cut_through_the_only_record_of_the_last_segment_drops_it(tmp_path: Path) -> None:
    written = write_journal(tmp_path, 4, size=20, segment_bytes=100)  # segments 1, 4
    last = tmp_path / "00000000000000000004.log"
    os.truncate(last, 5)
    lines: list[str] = []
    journal = Journal(tmp_path, segment_bytes=100, log=lines.append)
    journal.open()
    assert not last.exists()
    assert lines == [
        f"journal: cut torn tail of {last} at offset 0: 5 bytes (short header (5 of 8 bytes))",
        f"journal: removed empty last segment {last}",
    ]
    assert list(journal.records()) == written[:3]
    journal.append(4, b"four")  # the lost seq may be reused: it was never committed
    journal.close()
    assert read_all(tmp_path) == [*written[:3], b"four"]


@pytest.mark.parametrize(
    "tail",
    [b"\0" * 4096, b"\0" * 3, b"\xff" * 13, b"\x05\0\0\0" + b"\x01\x02\x03\x04" + b"short"],
    ids=["zero-page", "zero-bytes", "garbage", "bad-crc-record"],
)
def test_trailing_garbage_after_the_last_record_is_cut(tmp_path: Path, tail: bytes) -> None:
    written = write_journal(tmp_path, 5)
    ((_, segment),) = list_segments(tmp_path)
    end = segment.stat().st_size
    with open(segment, "ab") as file:
        file.write(tail)
    lines: list[str] = []
    journal = Journal(tmp_path, log=lines.append)
    journal.open()
    assert len(lines) == 1
    assert f"{segment} at offset {end}: {len(tail)} bytes" in lines[0]
    assert segment.stat().st_size == end
    assert list(journal.records()) == written
    journal.close()


def test_verify_reports_a_torn_tail_without_repairing_it(tmp_path: Path) -> None:
    write_journal(tmp_path, 3)
    ((_, segment),) = list_segments(tmp_path)
    os.truncate(segment, segment.stat().st_size - 2)
    with pytest.raises(JournalCorrupt, match="torn tail") as caught:
        verify(tmp_path)
    assert caught.value.offset == 56
    assert segment.stat().st_size == 3 * 28 - 2
    with pytest.raises(JournalCorrupt):
        list(Journal(tmp_path).records())  # records() does not repair either


# -- damage that must stop the start ---------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [8 + 3, 0, 3],  # a payload byte; the low and the high byte of the length
    ids=["payload", "length-low", "length-high"],
)
def test_damage_before_a_valid_record_raises(tmp_path: Path, where: int) -> None:
    written = write_journal(tmp_path, 5)
    ((_, segment),) = list_segments(tmp_path)
    damaged = record_offsets(written)[2]
    flip_byte(segment, damaged + where)
    size = segment.stat().st_size

    with pytest.raises(JournalCorrupt) as caught:
        Journal(tmp_path).open()
    assert caught.value.path == str(segment)
    assert caught.value.offset == damaged
    assert f"{segment} at offset {damaged}" in str(caught.value)
    assert segment.stat().st_size == size  # nothing was cut

    with pytest.raises(JournalCorrupt) as caught:
        verify(tmp_path)
    assert caught.value.offset == damaged
    journal = Journal(tmp_path)
    records = journal.records()
    assert [next(records), next(records)] == written[:2]
    with pytest.raises(JournalCorrupt) as caught:
        next(records)
    assert (caught.value.path, caught.value.offset) == (str(segment), damaged)


def test_damage_in_an_earlier_segment_raises_even_at_its_tail(tmp_path: Path) -> None:
    written = write_journal(tmp_path, 10, size=20, segment_bytes=100)  # segments 1, 4, 7, 10
    second = tmp_path / "00000000000000000004.log"
    flip_byte(second, 2 * 28 + 8 + 10)  # the payload of its last record, seq 6
    with pytest.raises(JournalCorrupt) as caught:
        Journal(tmp_path).open()
    assert (caught.value.path, caught.value.offset) == (str(second), 56)
    assert "not the last segment" in str(caught.value)

    flip_byte(second, 2 * 28 + 8 + 10)  # undo, then tear it instead
    assert read_all(tmp_path) == written
    os.truncate(second, 60)
    with pytest.raises(JournalCorrupt) as caught:
        Journal(tmp_path).open()
    assert (caught.value.path, caught.value.offset) == (str(second), 56)
    assert second.stat().st_size == 60


# -- property --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=300), min_size=0, max_size=60),
    segment_bytes=st.integers(min_value=9, max_value=2000),
    commit_every=st.integers(min_value=1, max_value=20),
    reopen_every=st.integers(min_value=1, max_value=80),
)
def test_round_trip_equals_input(
    sizes: list[int], segment_bytes: int, commit_every: int, reopen_every: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        written = [bytes([seq % 256]) * size for seq, size in enumerate(sizes, start=1)]
        journal = Journal(folder, fsync="off", segment_bytes=segment_bytes)
        journal.open()
        for seq, data in enumerate(written, start=1):
            journal.append(seq, data)
            if seq % commit_every == 0:
                journal.commit()
            if seq % reopen_every == 0:
                journal.close()
                journal = Journal(folder, fsync="off", segment_bytes=segment_bytes)
                journal.open()
        journal.close()

        assert read_all(Path(folder)) == written
        assert verify(folder) == len(written)
        for _, path in list_segments(folder):
            size = path.stat().st_size
            assert size <= segment_bytes or scan_segment(path) == (1, size)
