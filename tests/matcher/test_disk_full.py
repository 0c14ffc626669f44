"""A journal that cannot be written, on a real full disk (docs/operations.md, "Disk full").

Each test mounts a small tmpfs and fills it for real with a filler file: the matcher's
writes then fail with ENOSPC in the kernel, nothing is simulated. It must refuse mutating
commands with `journal_unavailable` (never acknowledge what is not durable), publish
nothing of the refused batch, serve reads from the last durable state, resume by itself
once space returns, and a restart must recover exactly the acknowledged commands.

Needs root (mount); skipped with the reason otherwise.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from matcher import codec
from matcher.service import journal_dir, snapshot_dir
from matcher.snapshot import list_snapshots
from tests.matcher.test_recovery import offline_hash
from tests.matcher.test_service import SYMBOL, MatcherProcess, spawner
from tests.support import run_replay, wait_until

Spawn = Callable[..., MatcherProcess]
DISK_BYTES = 4 * 1024 * 1024
CHUNK = 64 * 1024
REFUSED_PRICE = "25000"  # only the orders sent while the disk is full use this price


@pytest.fixture(name="spawn")
def spawn_fixture(tmp_path: Path) -> Iterator[Spawn]:
    yield from spawner(tmp_path)


@pytest.fixture(name="disk")
def disk_fixture(tmp_path: Path) -> Iterator[Path]:
    """A real tmpfs of DISK_BYTES, unmounted at teardown (after the spawn fixture's kill)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root and the mount command): {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill `disk` until the kernel says ENOSPC, then free `leave` bytes (a reserve file
    written first): returns the filler to delete when space should come back."""
    reserve = disk / "reserve.fill"
    if leave:
        reserve.write_bytes(b"r" * leave)
    filler = disk / "filler.fill"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for _ in range(DISK_BYTES // CHUNK + 10):
            try:
                os.write(fd, b"f" * CHUNK)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        else:
            raise AssertionError("the tmpfs never filled up")
        for size in (4096, 512, 1):  # the last partial pages too
            for _ in range(CHUNK // size + 1):
                try:
                    os.write(fd, b"f" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    reserve.unlink(missing_ok=True)
    return filler


def passive_order(i: int, price: str | None = None, **extra: Any) -> dict[str, Any]:
    side = "buy" if i % 2 else "sell"
    if price is None:
        price = str(30_000 - 1 - i % 9 if side == "buy" else 30_000 + 1 + i % 9)
    return {
        "op": "new_order",
        "order_type": "limit",
        "side": side,
        "price": price,
        "quantity": "0.01",
        "account": f"a{i % 3}",
        **extra,
    }


class Acked:
    """Every acknowledged order, to check a restart against."""

    def __init__(self) -> None:
        self.orders: dict[int, str] = {}  # order_id -> account

    def send(self, matcher: MatcherProcess, request: dict[str, Any]) -> dict[str, Any]:
        assert matcher.client is not None
        reply = matcher.client.request_raw(**request)
        if reply["ok"] and request["op"] == "new_order":
            self.orders[reply["result"]["order_id"]] = reply["result"]["account"]
        return reply

    def all_present(self, matcher: MatcherProcess) -> None:
        for order_id, account in self.orders.items():
            assert matcher.request("get_order", order_id=order_id, account=account)


def subscriber(matcher: MatcherProcess) -> zmq.Socket:
    sub: zmq.Socket = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"book.")
    sub.setsockopt(zmq.SUBSCRIBE, b"trade.")
    sub.setsockopt(zmq.SUBSCRIBE, b"hb.")
    sub.connect(matcher.pub)
    wait_until(lambda: sub.poll(200), timeout=30)  # a heartbeat: the subscription is live
    return sub


def drain(sub: zmq.Socket) -> list[tuple[str, Any]]:
    messages = []
    while sub.poll(0):
        messages.append(codec.decode_pub(sub.recv()))
    return messages


@pytest.mark.timeout(300)
@pytest.mark.parametrize("fsync", ["batch", "always"])
def test_a_full_disk_refuses_orders_serves_reads_and_resumes_when_space_returns(
    disk: Path, spawn: Spawn, fsync: str
) -> None:
    data_dir = disk / "data"
    matcher = spawn(data_dir, fsync=fsync).start()
    acked = Acked()
    for i in range(40):
        assert acked.send(matcher, passive_order(i))["ok"]
    assert acked.send(
        matcher,
        {
            "op": "new_order",
            "order_type": "market",
            "side": "buy",
            "quantity": "0.03",
            "account": "t",
        },
    )["ok"]  # trades too
    sub = subscriber(matcher)
    filler = fill(disk)

    # The segment's last page may still take a few records: they are durable and acked.
    first_refusal = None
    for i in range(2000):
        reply = acked.send(matcher, passive_order(i, price="20000" if i % 2 else "40000"))
        if not reply["ok"]:
            first_refusal = reply
            break
    assert first_refusal is not None, "the full disk never refused a write"
    assert first_refusal["error"]["code"] == "journal_unavailable", first_refusal
    assert "No space left on device" in first_refusal["error"]["message"]
    durable = matcher.request("ping", hash=True)
    assert durable["seq"] == max(acked.orders)
    assert "journal write failed" in matcher.log() and "rolled back to seq" in matcher.log()

    # Every mutating op is refused; nothing of it reaches the journal, the book or the feed.
    some_id, some_account = next(iter(acked.orders.items()))
    refused_requests = [
        passive_order(1, price=REFUSED_PRICE),
        {"op": "cancel_order", "order_id": some_id, "account": some_account},
        {"op": "amend_order", "order_id": some_id, "account": some_account, "quantity": "0.005"},
        {
            "op": "new_stop_order",
            "order_type": "stop_loss",
            "side": "sell",
            "stop_price": "1000",
            "quantity": "0.01",
            "account": "s",
        },
    ]
    for request in refused_requests:
        reply = acked.send(matcher, request)
        assert not reply["ok"] and reply["error"]["code"] == "journal_unavailable", reply
    # Reads work and show the last durable state.
    assert matcher.request("ping", hash=True) == durable
    book = matcher.request("book", depth=1000)
    assert all(price != REFUSED_PRICE for price, _ in book["bids"] + book["asks"])
    assert matcher.request("trades", limit=10)["trades"]
    acked.all_present(matcher)
    assert offline_hash(data_dir) == (durable["seq"], durable["state_hash"])
    for topic, body in drain(sub):
        if not topic.startswith("hb."):
            assert body["book_seq"] <= durable["book_seq"], (topic, body)
    assert matcher.child is not None and matcher.child.alive

    # Space comes back: the matcher notices by itself and accepts again, with no hole.
    filler.unlink()
    resumed = wait_until(
        lambda: (r := acked.send(matcher, passive_order(7)))["ok"] and r, timeout=60, interval=0.2
    )
    assert resumed["result"]["order_id"] == durable["seq"] + 1
    assert "journal writable again" in matcher.log()
    for i in range(20):
        assert acked.send(matcher, passive_order(i))["ok"]
    final = matcher.request("ping", hash=True)
    matcher.kill()

    matcher.start()
    restarted = matcher.request("ping", hash=True)
    assert {**restarted, "epoch": 0} == {**final, "epoch": 0}
    acked.all_present(matcher)
    assert offline_hash(data_dir) == (final["seq"], final["state_hash"])
    assert matcher.stop() == 0
    replay = run_replay(SYMBOL, "--data-dir", data_dir, "--verify")
    assert replay.returncode == 0, replay.stderr
    assert f"seq: {final['seq']}" in replay.stdout


@pytest.mark.timeout(300)
def test_a_snapshot_that_cannot_be_written_is_logged_and_serving_goes_on(
    disk: Path, spawn: Spawn
) -> None:
    """Room for journal records, none for a snapshot: the forked writer fails and says so,
    the loop serves on, and a stop with the disk still full writes no snapshot and exits 0."""
    data_dir = disk / "data"
    matcher = spawn(data_dir, fsync="batch", snapshot_every=820).start()
    assert matcher.client is not None
    for start in range(0, 800, 100):
        assert all(
            r["ok"]
            for r in matcher.client.pipeline(passive_order(i) for i in range(start, start + 100))
        )
    filler = fill(disk, leave=16 * 1024)  # a snapshot of 800 orders is far larger
    for i in range(40):  # one request per batch: the snapshot is forked at seq 820
        assert matcher.request(**passive_order(i))
    wait_until(lambda: "snapshot child for seq 820 exited with 1" in matcher.log(), timeout=60)
    log = matcher.log()
    assert "snapshot at seq 820 failed: [Errno 28] No space left on device" in log
    assert list_snapshots(snapshot_dir(data_dir, SYMBOL)) == []
    assert not [p for p in snapshot_dir(data_dir, SYMBOL).iterdir() if p.name.endswith(".tmp")]
    assert matcher.request(**passive_order(1))["order_id"] == 842  # serving goes on (seq 1: rules)
    before = matcher.request("ping", hash=True)
    assert matcher.stop() == 0
    assert f"no shutdown snapshot at seq {before['seq']}" in matcher.log()
    assert list_snapshots(snapshot_dir(data_dir, SYMBOL)) == []

    filler.unlink()
    matcher.start()
    after = matcher.request("ping", hash=True)
    assert (after["seq"], after["state_hash"]) == (before["seq"], before["state_hash"])
    assert offline_hash(data_dir) == (before["seq"], before["state_hash"])
    assert journal_dir(data_dir, SYMBOL).is_dir()
    assert matcher.stop() == 0
    assert [seq for seq, _ in list_snapshots(snapshot_dir(data_dir, SYMBOL))] == [before["seq"]]


@pytest.mark.timeout(300)
def test_a_matcher_started_on_a_full_disk_serves_reads_and_refuses_orders(
    disk: Path, spawn: Spawn
) -> None:
    data_dir = disk / "data"
    matcher = spawn(data_dir, fsync="batch").start()
    for i in range(10):
        assert matcher.request(**passive_order(i))
    before = matcher.request("ping", hash=True)
    matcher.kill()
    filler = fill(disk)

    matcher.start()  # the lock, the journal's open and recovery need no new block
    ping = matcher.request("ping", hash=True)
    assert (ping["seq"], ping["state_hash"]) == (before["seq"], before["state_hash"])
    refused = None
    for i in range(2000):  # the segment's last page may still take a few
        reply = matcher.raw(**passive_order(i, price="20000" if i % 2 else "40000"))
        if not reply["ok"]:
            refused = reply
            break
    assert refused is not None and refused["error"]["code"] == "journal_unavailable"
    assert matcher.request("book", depth=5)["bids"]
    filler.unlink()
    wait_until(lambda: matcher.raw(**passive_order(3))["ok"], timeout=60, interval=0.2)
    final = matcher.request("ping", hash=True)
    assert matcher.stop() == 0
    assert offline_hash(data_dir) == (final["seq"], final["state_hash"])


def test_the_gateway_answers_journal_unavailable_with_503() -> None:
    from gateway.errors import status_for
    from matcher.protocol import Code

    assert status_for(Code.JOURNAL_UNAVAILABLE) == 503
