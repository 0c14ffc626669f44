"""matcher/snapshot.py on real files: atomic write, newest valid wins, pruning."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from matcher.snapshot import (
    HEADER,
    MAGIC,
    list_snapshots,
    load_latest,
    snapshot_path,
    valid_snapshots,
    write_snapshot,
)


def test_write_then_load(tmp_path: Path) -> None:
    body = b"book state" * 100
    path = write_snapshot(tmp_path / "snaps", 1234, body)
    assert path == tmp_path / "snaps" / "snapshot-00000000000000001234.snap"
    data = path.read_bytes()
    assert data[:8] == MAGIC
    assert HEADER.unpack_from(data) == (MAGIC, 1234, len(body), zlib.crc32(body))
    assert load_latest(tmp_path / "snaps") == (1234, body)
    assert [entry.name for entry in (tmp_path / "snaps").iterdir()] == [path.name]


def test_nothing_to_load(tmp_path: Path) -> None:
    assert load_latest(tmp_path / "missing") is None
    assert load_latest(tmp_path) is None
    assert list_snapshots(tmp_path / "missing") == []


def test_an_empty_body_is_a_valid_snapshot(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 0, b"")
    assert load_latest(tmp_path) == (0, b"")


def test_the_newest_snapshot_wins(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 10, b"ten")
    write_snapshot(tmp_path, 200, b"two hundred")
    assert load_latest(tmp_path) == (200, b"two hundred")
    assert list_snapshots(tmp_path) == [
        (10, snapshot_path(tmp_path, 10)),
        (200, snapshot_path(tmp_path, 200)),
    ]


@pytest.mark.parametrize(
    "damage",
    ["flip-body", "truncate", "bad-magic", "empty", "renamed"],
)
def test_an_invalid_newest_snapshot_falls_back_to_the_older(tmp_path: Path, damage: str) -> None:
    write_snapshot(tmp_path, 10, b"older state")
    newest = write_snapshot(tmp_path, 20, b"newer state")
    data = bytearray(newest.read_bytes())
    if damage == "flip-body":
        data[-3] ^= 0xFF
    elif damage == "truncate":
        del data[-4:]
    elif damage == "bad-magic":
        data[0:8] = b"MWSNAP99"
    elif damage == "empty":
        data.clear()
    elif damage == "renamed":  # a snapshot of seq 20 under the name of seq 30
        newest.unlink()
        newest = snapshot_path(tmp_path, 30)
    newest.write_bytes(bytes(data))

    lines: list[str] = []
    assert load_latest(tmp_path, log=lines.append) == (10, b"older state")
    assert len(lines) == 1
    assert lines[0].startswith(f"snapshot: skipping invalid {newest}: ")
    assert newest.exists()  # kept for inspection


def test_no_valid_snapshot_at_all(tmp_path: Path) -> None:
    path = write_snapshot(tmp_path, 5, b"state")
    path.write_bytes(path.read_bytes()[:10])
    lines: list[str] = []
    assert load_latest(tmp_path, log=lines.append) is None
    assert lines == [f"snapshot: skipping invalid {path}: short header (10 of 24 bytes)"]


def test_a_leftover_temp_file_is_ignored_and_removed(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 7, b"seven")
    leftover = tmp_path / ".snapshot-k2j3h4.tmp"
    leftover.write_bytes(MAGIC + b"half a snapshot from a crash")
    lines: list[str] = []
    assert load_latest(tmp_path, log=lines.append) == (7, b"seven")
    assert not leftover.exists()
    assert lines == [f"snapshot: removed leftover temporary file {leftover}"]


def test_only_the_newest_keep_snapshots_stay(tmp_path: Path) -> None:
    for seq in range(1, 6):
        write_snapshot(tmp_path, seq * 100, b"state %d" % seq)
    assert [seq for seq, _ in list_snapshots(tmp_path)] == [400, 500]
    write_snapshot(tmp_path, 600, b"state 6", keep=1)
    assert [seq for seq, _ in list_snapshots(tmp_path)] == [600]
    write_snapshot(tmp_path, 700, b"state 7", keep=3)
    write_snapshot(tmp_path, 800, b"state 8", keep=3)
    assert [seq for seq, _ in list_snapshots(tmp_path)] == [600, 700, 800]
    assert load_latest(tmp_path) == (800, b"state 8")
    with pytest.raises(ValueError, match="keep"):
        write_snapshot(tmp_path, 900, b"x", keep=0)
    assert [seq for seq, _ in list_snapshots(tmp_path)] == [600, 700, 800]


def test_rewriting_the_same_seq_replaces_it(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 3, b"first")
    write_snapshot(tmp_path, 3, b"second")
    assert load_latest(tmp_path) == (3, b"second")
    assert len(list_snapshots(tmp_path)) == 1


def test_other_files_in_the_folder_are_left_alone(tmp_path: Path) -> None:
    segment = tmp_path / "00000000000000000001.log"
    segment.write_bytes(b"journal bytes")
    for seq in range(1, 5):
        write_snapshot(tmp_path, seq, b"s")
    assert load_latest(tmp_path) == (4, b"s")
    assert segment.read_bytes() == b"journal bytes"


def test_an_unreadable_snapshot_is_skipped_naming_it_and_why(tmp_path: Path) -> None:
    """Root reads any file whatever its mode, so the unreadable one is a directory."""
    write_snapshot(tmp_path, 10, b"older state")
    newest = snapshot_path(tmp_path, 20)
    newest.mkdir()
    lines: list[str] = []
    assert load_latest(tmp_path, log=lines.append) == (10, b"older state")
    assert lines == [f"snapshot: skipping unreadable {newest}: Is a directory"]


def test_valid_snapshots_go_on_to_the_older_ones(tmp_path: Path) -> None:
    """A caller that cannot decode the newest body takes the next one."""
    write_snapshot(tmp_path, 10, b"ten", keep=3)
    write_snapshot(tmp_path, 20, b"twenty", keep=3)
    write_snapshot(tmp_path, 30, b"thirty", keep=3)
    assert [(seq, body) for seq, _, body in valid_snapshots(tmp_path)] == [
        (30, b"thirty"),
        (20, b"twenty"),
        (10, b"ten"),
    ]


def test_a_leftover_temp_name_that_is_a_directory_is_reported_not_fatal(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 7, b"seven")
    odd = tmp_path / ".snapshot-odd.tmp"
    odd.mkdir()
    lines: list[str] = []
    assert load_latest(tmp_path, log=lines.append) == (7, b"seven")
    assert odd.is_dir() and lines and lines[0].startswith(f"snapshot: cannot remove leftover {odd}")
