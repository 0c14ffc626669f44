"""One writer per symbol folder (docs/operations.md, "One matcher per symbol folder").

A second matcher on the same data dir refuses to start (exit 2, the folder and the
holder's PID on stderr) and touches nothing; the kernel frees the lock when the holder
dies, even by SIGKILL, and even while its forked snapshot child is still running; replay
needs no lock and never writes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from matcher.files import LOCK_NAME
from matcher.journal import list_segments
from matcher.service import journal_dir
from tests.matcher.test_recovery import offline_hash
from tests.matcher.test_service import SYMBOL, MatcherProcess, spawner
from tests.support import REPO, free_ports, run_replay, wait_until

Spawn = Callable[..., MatcherProcess]


@pytest.fixture(name="spawn")
def spawn_fixture(tmp_path: Path) -> Iterator[Spawn]:
    yield from spawner(tmp_path)


def pid_of(matcher: MatcherProcess) -> int:
    assert matcher.child is not None and matcher.child.process is not None
    return matcher.child.process.pid


def place(matcher: MatcherProcess, count: int, first: int = 0) -> list[int]:
    ids = []
    for i in range(first, first + count):
        side = "buy" if i % 2 else "sell"
        price = 30_000 - 1 - i % 9 if side == "buy" else 30_000 + 1 + i % 9
        ids.append(
            matcher.request(
                "new_order", order_type="limit", side=side, price=str(price), quantity="0.01"
            )["order_id"]
        )
    return ids


def second_matcher(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """A matcher on the same data dir with ports of its own, run to its exit."""
    router, pub = free_ports(2)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "matcher.service",
            "--symbol",
            SYMBOL,
            "--data-dir",
            str(data_dir),
            "--router",
            f"tcp://127.0.0.1:{router}",
            "--pub",
            f"tcp://127.0.0.1:{pub}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_a_second_matcher_on_the_same_folder_refuses_naming_the_holder(
    tmp_path: Path, spawn: Spawn
) -> None:
    data_dir = tmp_path / "data"
    first = spawn(data_dir, fsync="batch").start()
    assert place(first, 5) == [2, 3, 4, 5, 6]  # seq 1 is the rules record
    [(_, segment)] = list_segments(journal_dir(data_dir, SYMBOL))
    journal_before = segment.read_bytes()
    folder = data_dir / SYMBOL
    assert (folder / LOCK_NAME).read_text().strip() == str(pid_of(first))

    second = second_matcher(data_dir)
    assert second.returncode == 2, second.stderr
    assert f"{folder} is locked by another matcher (PID {pid_of(first)})" in second.stderr
    assert "Traceback" not in second.stderr
    assert segment.read_bytes() == journal_before  # it opened nothing, repaired nothing
    # The holder goes on, with no seq taken by the other one.
    assert place(first, 3, first=5) == [7, 8, 9]
    assert offline_hash(data_dir)[0] == 9
    assert first.stop() == 0

    # A clean stop frees the lock: the next matcher starts and goes on from seq 9.
    successor = spawn(data_dir, "successor.log").start()
    assert place(successor, 1) == [10]
    assert (folder / LOCK_NAME).read_text().strip() == str(pid_of(successor))
    assert successor.stop() == 0


def test_kill_9_frees_the_lock(tmp_path: Path, spawn: Spawn) -> None:
    data_dir = tmp_path / "data"
    first = spawn(data_dir, fsync="batch").start()
    place(first, 4)
    first.kill()
    restarted = spawn(data_dir, "restarted.log").start()
    assert place(restarted, 1) == [6]
    assert restarted.stop() == 0


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(child) for child in text.split()]


def state_of(pid: int) -> str:
    """The one-letter state of a process ("" once it is gone), from /proc/<pid>/stat."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return ""


def freeze(pid: int) -> bool:
    """SIGSTOP `pid`; True once it is stopped, False if it had already exited (a zombie
    the parent has not reaped yet, or gone)."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return False

    def settled() -> str | None:
        state = state_of(pid)
        return state if state in ("T", "t", "Z", "X") else None if state else "gone"

    return wait_until(settled, timeout=10, interval=0.01) in ("T", "t")


@pytest.mark.timeout(600)
def test_a_matcher_killed_while_its_snapshot_child_runs_can_be_restarted_at_once(
    tmp_path: Path, spawn: Spawn
) -> None:
    """The snapshot child is frozen (SIGSTOP) wherever it is, even right after the fork
    with every inherited descriptor still open: the parent's death must still free the
    lock (a POSIX lock is never held by a forked child; an flock would be)."""
    data_dir = tmp_path / "data"
    matcher = spawn(data_dir, fsync="batch", snapshot_every=2000).start()
    assert matcher.client is not None
    parent = pid_of(matcher)
    frozen = None
    sent = 0
    for _ in range(20):  # each round makes one snapshot child; catch one alive
        requests = [
            {
                "op": "new_order",
                "order_type": "limit",
                "side": "buy" if i % 2 else "sell",
                "price": str(29_000 - i % 50 if i % 2 else 31_000 + i % 50),
                "quantity": "0.01",
            }
            for i in range(sent, sent + 2000)
        ]
        sent += 2000
        for start in range(0, 2000, 500):
            assert all(r["ok"] for r in matcher.client.pipeline(requests[start : start + 500]))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and frozen is None:
            for child in children_of(parent):
                if freeze(child):
                    frozen = child
                break
        if frozen is not None:
            break
    if frozen is None:
        pytest.skip("no snapshot child was caught alive in 20 rounds (machine too fast)")
    try:
        state = matcher.request("ping", hash=True)
        # The parent dies. Its child dies with it (PR_SET_PDEATHSIG, matcher/lifeline.py)
        # unless it was frozen before it could ask for that: then it stays, stopped.
        # Either way the lock must be free at once.
        matcher.kill()
        restarted = spawn(data_dir, "restarted.log").start()
        ping = restarted.request("ping", hash=True)
        assert (ping["seq"], ping["state_hash"]) == (state["seq"], state["state_hash"])
    finally:
        try:
            os.kill(frozen, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_until(lambda: state_of(frozen) in ("", "Z", "X"), timeout=30)
    assert restarted.stop() == 0


def test_replay_takes_no_lock_and_leaves_a_live_journal_alone(tmp_path: Path, spawn: Spawn) -> None:
    """A replay against a running matcher's folder: what looks like a torn tail (a write
    in flight) is reported and left alone, and the lock stays with the matcher."""
    data_dir = tmp_path / "data"
    matcher = spawn(data_dir, fsync="batch").start()
    place(matcher, 6)
    [(_, segment)] = list_segments(journal_dir(data_dir, SYMBOL))
    committed = segment.stat().st_size
    with open(segment, "ab") as handle:
        handle.write(b"\x20\x00\x00\x00half a record")  # as if caught mid-write
    torn = segment.read_bytes()
    try:
        replay = run_replay(SYMBOL, "--data-dir", data_dir, "--verify")
        assert replay.returncode == 0, replay.stderr
        assert "torn tail" in replay.stderr and "seq: 7" in replay.stdout
        assert segment.read_bytes() == torn
        lock = data_dir / SYMBOL / LOCK_NAME
        assert lock.read_text().strip() == str(pid_of(matcher))
    finally:
        os.truncate(segment, committed)  # the matcher appends after it
    assert place(matcher, 1) == [8]
    assert matcher.stop() == 0
