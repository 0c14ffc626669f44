"""Crash recovery of the real matcher process: kill -9 under load, torn tails, damage,
clean restarts and snapshots (docs/journal.md).

MATCHWIRE_SOAK=1 runs the kill -9 test for 50 cycles instead of 10 and prints its figures
(docs/operations.md, "kill -9 soak").
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from matcher import codec
from matcher.journal import HEADER, Journal, list_segments
from matcher.protocol import EV_TRADE
from matcher.service import journal_dir, new_engine, snapshot_dir
from matcher.snapshot import list_snapshots, write_snapshot
from matcher.system import load_config
from matcher.units import CachedUnits
from tests.matcher.test_service import SYMBOL, MatcherProcess, spawner
from tests.support import run_replay, wait_until

SOAK = os.environ.get("MATCHWIRE_SOAK") == "1"
KILL_CYCLES = 50 if SOAK else 10
Spawn = Callable[..., MatcherProcess]


@pytest.fixture(name="spawn")
def spawn_fixture(tmp_path: Path) -> Iterator[Spawn]:
    yield from spawner(tmp_path)


STATUS_RANK = {
    "pending": 0,
    "new": 1,
    "partially_filled": 2,
    "filled": 3,
    "cancelled": 3,
    "rejected": 3,
}
FINISHED = ("filled", "cancelled", "rejected")


def offline_hash(data_dir: Path, until_seq: int | None = None) -> tuple[int, str]:
    """(seq, state hash) of a fresh engine fed every journal record (up to until_seq)."""
    units = CachedUnits(load_config(None, symbols=[SYMBOL]).symbols[SYMBOL])
    engine = new_engine(units)
    for payload in Journal(journal_dir(data_dir, SYMBOL)).records():
        command = codec.decode_command(payload)
        if until_seq is not None and command[1] > until_seq:
            break
        engine.apply(command)
    engine.check()
    return engine.seq, engine.state_hash()


def record_spans(path: Path) -> list[tuple[int, int]]:
    """(start, end) byte offsets of every record of a segment."""
    data = path.read_bytes()
    spans, offset = [], 0
    while offset < len(data):
        length, _ = HEADER.unpack_from(data, offset)
        spans.append((offset, offset + HEADER.size + length))
        offset += HEADER.size + length
    return spans


# -- (a) kill -9 under load -----------------------------------------------------------


class LoadClient:
    """Pipelines a seeded mix of orders, cancels and amends; records every acknowledgement."""

    WINDOW = 200

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.acked: dict[int, tuple[str, str, str]] = {}  # order_id -> (account, status, filled)
        self.live: list[tuple[int, str]] = []  # acked resting orders: (order_id, account)
        self.next_req = 0

    def _request(self) -> dict[str, Any]:
        rng = self.rng
        roll = rng.random()
        account = rng.choice(("anonymous", "k1", "k2"))
        quantity = f"0.0{rng.randint(1, 5)}"
        side = rng.choice(("buy", "sell"))
        if roll < 0.15 and self.live:
            order_id, owner = self.live.pop(rng.randrange(len(self.live)))
            return {"op": "cancel_order", "order_id": order_id, "account": owner}
        if roll < 0.20 and self.live:
            order_id, owner = rng.choice(self.live)
            return {"op": "amend_order", "order_id": order_id, "account": owner, "quantity": "0.01"}
        if roll < 0.70:
            price = 30_000 - rng.randint(1, 20) if side == "buy" else 30_000 + rng.randint(1, 20)
        elif roll < 0.92:
            price = 30_000 + rng.randint(0, 8) if side == "buy" else 30_000 - rng.randint(0, 8)
        else:
            return {
                "op": "new_order",
                "order_type": "market",
                "side": side,
                "quantity": quantity,
                "account": account,
            }
        return {
            "op": "new_order",
            "order_type": "limit",
            "side": side,
            "price": str(price),
            "quantity": quantity,
            "account": account,
        }

    def _record(self, reply: dict[str, Any]) -> None:
        if not reply.get("ok"):
            return  # e.g. cancelling an order that filled meanwhile
        order = reply["result"]
        order_id = order["order_id"]
        self.acked[order_id] = (order["account"], order["status"], order["filled_quantity"])
        if order["status"] in ("new", "partially_filled") and reply["req_id"].startswith("n"):
            self.live.append((order_id, order["account"]))

    def run_until_killed(self, matcher: MatcherProcess, kill_after: float) -> int:
        """Pipeline until `kill_after` seconds, SIGKILL the matcher, collect what was acked."""
        sock: zmq.Socket = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 1_000_000)
        sock.connect(matcher.router)
        acked_before = len(self.acked)
        in_flight = 0
        started = time.monotonic()
        killed = False
        try:
            while True:
                if not killed and time.monotonic() - started >= kill_after:
                    assert matcher.child is not None
                    matcher.child.kill()  # SIGKILL at a seeded, random moment
                    killed = True
                while not killed and in_flight < self.WINDOW:
                    request = self._request()
                    self.next_req += 1
                    request["req_id"] = f"{request['op'][0]}{self.next_req}"
                    sock.send(codec.encode_request(request))
                    in_flight += 1
                if not sock.poll(500 if killed else 20):
                    if killed:
                        break  # nothing more will come
                    continue
                while True:  # drain whatever arrived
                    try:
                        frame = sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    in_flight -= 1
                    self._record(codec.decode_reply(frame))
        finally:
            sock.close(0)
        return len(self.acked) - acked_before

    def check(self, matcher: MatcherProcess, order_ids: list[int]) -> None:
        """Every acked order exists, in the acked state or a later one."""
        assert matcher.client is not None
        for start in range(0, len(order_ids), 2000):
            chunk = order_ids[start : start + 2000]
            replies = matcher.client.pipeline(
                {"op": "get_order", "order_id": order_id, "account": self.acked[order_id][0]}
                for order_id in chunk
            )
            for order_id, reply in zip(chunk, replies, strict=True):
                account, status, filled = self.acked[order_id]
                assert reply["ok"], f"acked order {order_id} lost: {reply}"
                now = reply["result"]
                assert STATUS_RANK[now["status"]] >= STATUS_RANK[status], (order_id, status, now)
                assert float(now["filled_quantity"]) >= float(filled), (order_id, filled, now)
                if status in FINISHED:
                    assert (now["status"], now["filled_quantity"]) == (status, filled), order_id


class OfflineReplica:
    """A fresh engine kept in step with the journal: each catch-up applies only new records
    (the journal only grows; a restart cuts only records appended after the last catch-up)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        units = CachedUnits(load_config(None, symbols=[SYMBOL]).symbols[SYMBOL])
        self.engine = new_engine(units)

    def catch_up(self) -> tuple[int, str]:
        engine = self.engine
        for payload in Journal(journal_dir(self.data_dir, SYMBOL)).records(engine.seq):
            command = codec.decode_command(payload)
            if command[1] > engine.seq:
                engine.apply(command)
        engine.check()
        return engine.seq, engine.state_hash()


@pytest.mark.timeout(3600 if SOAK else 300)
def test_kill_9_under_load_loses_nothing_acknowledged(tmp_path: Path, spawn: Spawn) -> None:
    rng = random.Random(20240611)
    started = time.monotonic()
    data_dir = tmp_path / "data"
    policies = ("batch", "always", "off")
    matcher = spawn(data_dir, fsync="batch", snapshot_every=1500).start()
    load = LoadClient(rng)
    replica = OfflineReplica(data_dir)
    for cycle in range(KILL_CYCLES):
        seen = set(load.acked)
        load.run_until_killed(matcher, kill_after=rng.uniform(0.05, 0.4))
        matcher.fsync = policies[cycle % len(policies)]
        matcher.start()
        fresh = [order_id for order_id in load.acked if order_id not in seen]
        older = rng.sample(sorted(seen), min(300, len(seen)))
        load.check(matcher, fresh + older)
        live = matcher.request("ping", hash=True)
        assert (live["seq"], live["state_hash"]) == replica.catch_up(), f"cycle {cycle}"
        assert max(load.acked) <= live["seq"]
        # Orders still live after the crash can be cancelled on the next round.
        load.live = [
            (i, a) for i, a in load.live if load.acked[i][1] in ("new", "partially_filled")
        ]
    assert matcher.stop() == 0
    assert len(load.acked) > 1000
    replay = run_replay(SYMBOL, "--data-dir", data_dir, "--verify")
    assert replay.returncode == 0, replay.stderr
    print(
        f"\nkill -9 soak: {KILL_CYCLES} cycles, {len(load.acked)} acknowledged orders, all "
        f"recovered (final seq {live['seq']}), {time.monotonic() - started:.0f} s"
    )


# -- (b) torn tail --------------------------------------------------------------------


@pytest.fixture(scope="module")
def crashed_journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir written with fsync=always and left by SIGKILL: no shutdown snapshot."""
    folder = tmp_path_factory.mktemp("crashed")
    matcher = MatcherProcess(folder / "data", folder / "matcher.log", fsync="always")
    try:
        _write_crashed_journal(matcher.start())
    finally:
        matcher.kill()
    assert not list_snapshots(snapshot_dir(folder / "data", SYMBOL))
    return folder / "data"


def _write_crashed_journal(matcher: MatcherProcess) -> None:
    for i in range(30):
        side = "buy" if i % 2 else "sell"
        price = 30_000 - 1 - i % 5 if side == "buy" else 30_000 + 1 + i % 5
        matcher.request(
            "new_order",
            order_type="limit",
            side=side,
            price=str(price),
            quantity="0.02",
            account="a",
        )
        if i % 7 == 6:
            matcher.request(
                "new_order", order_type="market", side=side, quantity="0.03", account="b"
            )
    matcher.request(
        "new_stop_order",
        order_type="stop_loss",
        side="sell",
        stop_price="29000",
        quantity="0.01",
        account="c",
    )
    far = matcher.request(
        "new_order", order_type="limit", side="buy", price="20000", quantity="0.01", account="a"
    )
    matcher.request("cancel_order", order_id=far["order_id"], account="a")  # a short record


def test_a_torn_last_record_is_cut_at_every_offset(
    crashed_journal: Path, tmp_path: Path, spawn: Spawn
) -> None:
    [(_, segment)] = list_segments(journal_dir(crashed_journal, SYMBOL))
    spans = record_spans(segment)
    last_start, last_end = spans[-1]
    last_seq, _ = offline_hash(crashed_journal)
    expected = offline_hash(crashed_journal, until_seq=last_seq - 1)
    cuts = list(range(last_start, last_end))  # last_start: the record is simply absent
    parallel = 4
    for batch_start in range(0, len(cuts), parallel):
        running = []
        for cut in cuts[batch_start : batch_start + parallel]:
            data_dir = tmp_path / f"cut-{cut}"
            shutil.copytree(crashed_journal, data_dir)
            segment_copy = journal_dir(data_dir, SYMBOL) / segment.name
            with open(segment_copy, "r+b") as handle:
                handle.truncate(cut)
            running.append(
                (
                    cut,
                    segment_copy,
                    spawn(data_dir, f"cut-{cut}.log", fsync="always").start(wait=False),
                )
            )
        for cut, segment_copy, matcher in running:
            try:
                matcher.wait_ready()
                live = matcher.request("ping", hash=True)
                assert (live["seq"], live["state_hash"]) == expected, f"cut at {cut}"
            finally:
                matcher.kill()
            assert segment_copy.stat().st_size == last_start, f"cut at {cut}"
            log = matcher.log()
            if cut > last_start:
                assert f"cut torn tail of {segment_copy} at offset {last_start}" in log, log
                assert f"{cut - last_start} bytes" in log
            else:
                assert "torn tail" not in log


# -- (c) damage mid-file --------------------------------------------------------------


@pytest.mark.parametrize("where", ["body", "length", "crc"])
def test_damage_mid_file_refuses_to_start(
    crashed_journal: Path, tmp_path: Path, spawn: Spawn, where: str
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(crashed_journal, data_dir)
    [(_, segment)] = list_segments(journal_dir(data_dir, SYMBOL))
    spans = record_spans(segment)
    start, end = spans[len(spans) // 2]
    offset = {
        "body": start + HEADER.size + (end - start - HEADER.size) // 2,
        "length": start + 1,
        "crc": start + 5,
    }[where]
    data = bytearray(segment.read_bytes())
    data[offset] ^= 0x5A
    segment.write_bytes(bytes(data))
    before = segment.read_bytes()
    matcher = spawn(data_dir).start(wait=False)
    assert matcher.child is not None and matcher.child.process is not None
    try:
        code = matcher.child.process.wait(timeout=20)
    finally:
        matcher.kill()
    assert code != 0
    log = matcher.log()
    assert f"journal corrupt: {segment} at offset {start}" in log, log
    assert segment.read_bytes() == before, "a refused start must not repair anything"


# -- (d) clean restart and snapshots --------------------------------------------------


def _visible_state(matcher: MatcherProcess) -> dict[str, Any]:
    ping = matcher.request("ping", hash=True)
    book = matcher.request("book", depth=1000)
    book.pop("timestamp")
    snapshot = matcher.request("snapshot")
    snapshot.pop("epoch")
    return {
        "seq": ping["seq"],
        "book_seq": ping["book_seq"],
        "state_hash": ping["state_hash"],
        "book": book,
        "snapshot": snapshot,
        "trades": matcher.request("trades", limit=1000),
        "open": {
            account: matcher.request("orders", account=account, status="open")
            for account in ("a", "b", "c")
        },
        "all": {
            account: matcher.request("orders", account=account, limit=1000)
            for account in ("a", "b", "c")
        },
    }


def test_a_clean_restart_keeps_everything(tmp_path: Path, spawn: Spawn) -> None:
    data_dir = tmp_path / "data"
    matcher = spawn(data_dir, fsync="batch").start()
    for i in range(40):
        side = "buy" if i % 2 else "sell"
        price = 30_000 - 1 - i % 4 if side == "buy" else 30_000 + 1 + i % 4
        matcher.request(
            "new_order",
            order_type="limit",
            side=side,
            price=str(price),
            quantity="0.05",
            account="a",
            client_order_id=f"a-{i}",
        )
    matcher.request("new_order", order_type="market", side="buy", quantity="0.12", account="b")
    stop = matcher.request(
        "new_stop_order",
        order_type="stop_loss",
        side="sell",
        stop_price="29996",
        quantity="0.01",
        account="c",
    )
    matcher.request(
        "new_stop_order",
        order_type="take_profit",
        side="buy",
        stop_price="29000",
        price="29000",
        quantity="0.01",
        account="c",
    )
    before = _visible_state(matcher)
    assert before["trades"]["trades"] and len(before["open"]["c"]["orders"]) == 2
    assert matcher.stop() == 0
    assert [seq for seq, _ in list_snapshots(snapshot_dir(data_dir, SYMBOL))] == [before["seq"]]

    matcher.start()
    assert _visible_state(matcher) == before
    assert f"recovered to seq {before['seq']} (0 records replayed)" in matcher.log()
    duplicate = matcher.raw(
        "new_order",
        order_type="limit",
        side="buy",
        price="1000",
        quantity="1",
        account="a",
        client_order_id="a-39",
    )
    assert duplicate["error"]["code"] == "duplicate_client_order_id"
    # Trade ids go on from where they were; the pending stop still triggers.
    last_trade = before["trades"]["trades"][0]["trade_id"]
    sweep = matcher.request(
        "new_order", order_type="market", side="sell", quantity="0.75", account="b"
    )  # prints at 29996: the stop triggers
    assert [t["trade_id"] for t in sweep["trades"]][0] == last_trade + 1
    triggered = matcher.request("get_order", order_id=stop["order_id"], account="c")
    assert triggered["status"] == "filled" and triggered["trades"]
    assert matcher.request("ping")["book_seq"] > before["book_seq"]
    matcher.stop()


PIDS_CGROUPS = Path("/sys/fs/cgroup/pids")  # cgroup v1 "pids" controller


def place_passive_orders(matcher: MatcherProcess, count: int) -> None:
    """`count` resting orders that never cross, one request (one loop batch) each."""
    for i in range(count):
        side = "buy" if i % 2 else "sell"
        price = 30_000 - 1 - i % 9 if side == "buy" else 30_000 + 1 + i % 9
        order = matcher.request(
            "new_order", order_type="limit", side=side, price=str(price), quantity="0.01"
        )
        assert order["status"] == "new"


def test_a_snapshot_child_that_cannot_be_forked_is_logged_and_serving_goes_on(
    tmp_path: Path, spawn: Spawn
) -> None:
    """fork() really fails (EAGAIN): the matcher is put in a pids cgroup with no room for
    one more task. It must answer every request, log each failed snapshot, retry a
    `snapshot_every` later, and lose nothing across a restart."""
    data_dir = tmp_path / "data"
    matcher = spawn(data_dir, fsync="batch", snapshot_every=50).start()
    assert matcher.child is not None and matcher.child.process is not None
    group = PIDS_CGROUPS / f"matchwire-test-{os.getpid()}-{matcher.child.process.pid}"
    try:
        group.mkdir()
    except OSError as exc:
        matcher.stop()
        pytest.skip(f"needs a writable cgroup v1 pids hierarchy to make fork() fail: {exc}")
    try:
        (group / "cgroup.procs").write_text(str(matcher.child.process.pid))
        (group / "pids.max").write_text((group / "pids.current").read_text())
        place_passive_orders(matcher, 120)
        log = matcher.log()
        assert "cannot fork a snapshot child at seq 50" in log
        assert "cannot fork a snapshot child at seq 100" in log
        assert list_snapshots(snapshot_dir(data_dir, SYMBOL)) == []
        (group / "pids.max").write_text("max")
        place_passive_orders(matcher, 40)  # seq 161 (seq 1 is the rules): the retry at 150 forks
        wait_until(
            lambda: [s for s, _ in list_snapshots(snapshot_dir(data_dir, SYMBOL))] == [150],
            timeout=30,
        )
        assert "snapshot at seq 150" in matcher.log()
        before = matcher.state()
        matcher.kill()
    finally:
        matcher.kill()
        wait_until(lambda: not (group / "cgroup.procs").read_text().strip(), timeout=10)
        group.rmdir()
    matcher.start()
    assert "recovered to seq 161 (11 records replayed)" in matcher.log()
    assert matcher.state() == before
    assert offline_hash(data_dir) == (161, before[2])
    matcher.stop()


def test_a_snapshot_ahead_of_the_journal_refuses_to_start(tmp_path: Path, spawn: Spawn) -> None:
    """A snapshot holding commands the journal lacks (a crash between a shutdown snapshot
    and the journal's commit, or a lost journal tail) must not be served from: the next
    records would follow a hole in the history."""
    data_dir = tmp_path / "data"
    matcher = spawn(data_dir, fsync="batch").start()
    place_passive_orders(matcher, 5)
    assert matcher.stop() == 0  # the shutdown snapshot is at seq 6 (seq 1: the rules)
    [(_, segment)] = list_segments(journal_dir(data_dir, SYMBOL))
    spans = record_spans(segment)
    os.truncate(segment, spans[3][0])  # the journal now ends at seq 3, on a record boundary

    matcher.start(wait=False)
    assert matcher.child is not None and matcher.child.process is not None
    assert matcher.child.process.wait(timeout=30) == 2
    assert "the journal ends at seq 3, before the newest snapshot (seq 6)" in matcher.log()
    [(_, snapshot)] = list_snapshots(snapshot_dir(data_dir, SYMBOL))
    snapshot.rename(tmp_path / snapshot.name)  # what the message tells an operator to do
    matcher.start()
    assert matcher.request("ping")["seq"] == 3
    matcher.stop()


def test_a_restart_replays_only_the_records_after_the_snapshot(
    tmp_path: Path, spawn: Spawn
) -> None:
    data_dir = tmp_path / "data"
    matcher = spawn(data_dir, fsync="batch", snapshot_every=100).start()
    for i in range(250):  # one request per loop batch: snapshots at exactly 100 and 200
        side = "buy" if i % 2 else "sell"
        price = 30_000 - 1 - i % 9 if side == "buy" else 30_000 + 1 + i % 9
        matcher.request(
            "new_order", order_type="limit", side=side, price=str(price), quantity="0.01"
        )
        if i % 10 == 9:
            matcher.request("new_order", order_type="market", side=side, quantity="0.01")
    seq = matcher.request("ping")["seq"]
    assert seq == 276  # seq 1 is the rules record
    before = matcher.state()

    # Snapshots are written by a forked child while the loop goes on: wait for them.
    def snapshots() -> list[int]:
        return [s for s, _ in list_snapshots(snapshot_dir(data_dir, SYMBOL))]

    wait_until(lambda: snapshots() == [100, 200], timeout=30)
    assert "snapshot at seq 200" in matcher.log() and "(child " in matcher.log()
    newest = snapshots()[-1]
    matcher.kill()

    matcher.start()
    assert f"recovered to seq {seq} ({seq - newest} records replayed)" in matcher.log()
    assert matcher.state() == before
    assert offline_hash(data_dir) == (seq, before[2])
    assert matcher.stop() == 0
    matcher.start()
    assert f"recovered to seq {seq} (0 records replayed)" in matcher.log()
    assert matcher.state() == before
    matcher.stop()


def test_trades_in_the_journal_match_the_live_history(tmp_path: Path, spawn: Spawn) -> None:
    """Every trade id the live matcher printed comes back on replay, in order."""
    data_dir = tmp_path / "data"
    matcher = spawn(data_dir).start()
    for i in range(60):
        side = "buy" if i % 2 else "sell"
        matcher.request(
            "new_order",
            order_type="limit",
            side=side,
            price=str(30_000 - 1 if side == "buy" else 30_000 + 1),
            quantity="0.02",
        )
        if i % 4 == 3:
            matcher.request("new_order", order_type="market", side=side, quantity="0.03")
    live = [t["trade_id"] for t in matcher.request("trades", limit=1000)["trades"]]
    matcher.kill()
    engine = new_engine(CachedUnits(load_config(None, symbols=[SYMBOL]).symbols[SYMBOL]))
    replayed = []
    for payload in Journal(journal_dir(data_dir, SYMBOL)).records():
        replayed += [e[1] for e in engine.apply(codec.decode_command(payload)) if e[0] == EV_TRADE]
    assert replayed == sorted(live) == list(range(1, len(live) + 1))


@pytest.mark.parametrize("fsync", ["batch", "always"])
def test_a_failed_journal_write_is_refused_and_leaves_no_snapshot_ahead_of_the_journal(
    tmp_path: Path, spawn: Spawn, fsync: str
) -> None:
    """The disk refuses a write (EFBIG past RLIMIT_FSIZE): the matcher does not acknowledge
    the batch, answers journal_unavailable and serves on; a stop writes no snapshot that
    holds commands the journal lacks; the restart recovers exactly the journal.
    (tests/matcher/test_disk_full.py does the same on a really full disk.)"""
    data_dir = tmp_path / "data"
    matcher = spawn(data_dir, fsync=fsync, max_file_bytes=20_000).start()
    acked = 0
    for i in range(5_000):
        reply = matcher.raw(
            "new_order",
            order_type="limit",
            side="buy",
            price=str(20_000 + i % 100),
            quantity="0.01",
        )
        if not reply["ok"]:
            break
        acked += 1
    assert reply["error"]["code"] == "journal_unavailable", reply
    assert "File too large" in reply["error"]["message"]
    assert matcher.child is not None and matcher.child.alive
    assert matcher.request("ping")["seq"] == acked + 1  # seq 1 is the rules record
    assert matcher.stop() == 0
    assert "File too large" in matcher.log() and f"rolled back to seq {acked + 1}" in matcher.log()
    assert all(seq <= acked + 1 for seq, _ in list_snapshots(snapshot_dir(data_dir, SYMBOL)))

    restarted = spawn(data_dir, "restart.log").start()
    try:
        ping = restarted.request("ping", hash=True)
        assert ping["seq"] == acked + 1  # the refused batch was never acknowledged (1: rules)
        assert (ping["seq"], ping["state_hash"]) == offline_hash(data_dir)
        order = restarted.request(
            "new_order", order_type="limit", side="buy", price="100", quantity="1"
        )
        assert order["order_id"] == acked + 2
    finally:
        restarted.stop()


def test_pruning_keeps_what_recovery_needs_and_drops_the_rest(tmp_path: Path) -> None:
    """--prune-segments deletes segments older than the oldest kept snapshot, and a
    restart still rebuilds the exact state."""
    from clients.zmq_client import MatcherClient
    from matcher.journal import list_segments
    from tests.support import Child, free_ports

    router, pub = free_ports(2)
    args = [
        "-m",
        "matcher.service",
        "--symbol",
        "BTC-USDT",
        "--data-dir",
        str(tmp_path),
        "--router",
        f"tcp://127.0.0.1:{router}",
        "--pub",
        f"tcp://127.0.0.1:{pub}",
        "--fsync",
        "off",
        "--snapshot-every",
        "200",
        "--segment-bytes",
        "4096",
        "--prune-segments",
    ]
    child = Child(args, tmp_path / "m.log").start()
    client = MatcherClient(f"tcp://127.0.0.1:{router}", timeout=15)
    try:
        requests = [
            {
                "op": "new_order",
                "side": "buy" if i % 2 else "sell",
                "order_type": "limit",
                "price": str(100 + (i % 7) - 3 * (i % 2)),
                "quantity": "1",
            }
            for i in range(1500)
        ]
        for start in range(0, len(requests), 100):
            assert all(r["ok"] for r in client.pipeline(requests[start : start + 100]))
        before = client.request("ping", hash=True)["state_hash"]
        assert child.stop() == 0
    finally:
        client.close()
    segments = list_segments(tmp_path / "BTC-USDT" / "journal")
    assert segments[0][0] > 1, "old segments were pruned"
    assert "pruned" in child.log()
    restarted = Child(args, tmp_path / "m2.log").start()
    client = MatcherClient(f"tcp://127.0.0.1:{router}", timeout=15)
    try:
        assert client.request("ping", hash=True)["state_hash"] == before
    finally:
        client.close()
        restarted.stop()


# -- (e) a snapshot that cannot be used -------------------------------------------------


def _spoil(path: Path, how: str) -> str:
    """Make the snapshot at `path` unusable in a real way (the tests run as root, so not
    by its mode bits); returns the reason the warning must give."""
    seq = int(path.name.split("-")[1].split(".")[0])
    if how == "directory":
        path.unlink()
        path.mkdir()
        (path / "stray").write_text("a directory where the snapshot was")
        return "Is a directory"
    if how == "other_version":  # valid by CRC, written by another state version
        from matcher.snapshot import HEADER as SNAP_HEADER

        state = dict(codec.decode_state(path.read_bytes()[SNAP_HEADER.size :]))
        state["version"] = 999
        body = codec.encode_state(state)
    else:  # valid by CRC, but not msgpack at all
        body = b"\xc1 this is no msgpack"
    write_snapshot(path.parent, seq, body)
    return "snapshot state version 999" if how == "other_version" else "skipping undecodable"


@pytest.mark.parametrize("how", ["directory", "other_version", "not_msgpack"])
def test_an_unusable_snapshot_falls_back_to_an_older_one_then_to_the_whole_journal(
    tmp_path: Path, spawn: Spawn, how: str
) -> None:
    data_dir = tmp_path / "data"
    matcher = spawn(data_dir, fsync="batch").start()
    place_passive_orders(matcher, 5)
    assert matcher.stop() == 0  # snapshot at seq 6 (seq 1 is the rules record)
    matcher.start()
    place_passive_orders(matcher, 5)
    before = matcher.state()
    assert matcher.stop() == 0  # snapshot at seq 11; both are kept
    (_, older), (_, newest) = list_snapshots(snapshot_dir(data_dir, SYMBOL))
    reason = _spoil(newest, how)

    matcher.start()
    log = matcher.log()
    assert (
        f"snapshot: skipping unreadable {newest}" in log
        or f"snapshot: skipping undecodable {newest}" in log
    ), log
    assert reason in log
    assert "recovered to seq 11 (5 records replayed)" in log
    assert matcher.state() == before
    matcher.kill()  # no shutdown snapshot over the spoiled one

    replay = run_replay(SYMBOL, "--data-dir", data_dir, "--verify")
    assert replay.returncode == 0, replay.stderr
    assert str(newest) in replay.stderr and f"state_hash: {before[2]}" in replay.stdout
    assert "snapshot at seq 6" in replay.stdout

    _spoil(older, how)
    matcher.start()
    log = matcher.log()
    assert "recovered to seq 11 (11 records replayed)" in log  # the whole journal
    assert matcher.state() == before
    matcher.kill()
