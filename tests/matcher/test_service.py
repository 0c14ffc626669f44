"""matcher/service.py end to end: a real matcher process, real ZeroMQ sockets, real files.

Every op round-trips; pipelined replies keep the request order; garbage of every kind is
answered (or dropped) without changing state or killing the process; the PUB feed has
contiguous book_seq and trade ids, heartbeats, and topic prefixes that SUB can filter.

`MatcherProcess` is shared with tests/matcher/test_recovery.py and test_replay.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from clients.zmq_client import MatcherClient, MatcherError, MatcherTimeout
from matcher import codec
from tests.support import Child, free_ports

SYMBOL = "BTC-USDT"


class MatcherProcess:
    """One `python -m matcher.service` child on fresh loopback ports, and a client to it."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        fsync: str = "off",
        snapshot_every: int | None = None,
        max_file_bytes: int | None = None,
        symbol: str = SYMBOL,
        extra: list[str] | None = None,
    ) -> None:
        self.max_file_bytes = max_file_bytes  # RLIMIT_FSIZE: writes past it fail (EFBIG)
        self.symbol = symbol
        self.extra = extra or []  # more flags (--config, --apply-rules); may change per start
        self.data_dir = data_dir
        self.log_path = log_path
        self.fsync = fsync
        self.snapshot_every = snapshot_every
        self.child: Child | None = None
        self.client: MatcherClient | None = None
        self.router = self.pub = ""

    def start(self, wait: bool = True, timeout: float = 30.0) -> MatcherProcess:
        router_port, pub_port = free_ports(2)
        self.router = f"tcp://127.0.0.1:{router_port}"
        self.pub = f"tcp://127.0.0.1:{pub_port}"
        args = [
            "-m",
            "matcher.service",
            "--symbol",
            self.symbol,
            "--data-dir",
            str(self.data_dir),
            "--fsync",
            self.fsync,
            "--router",
            self.router,
            "--pub",
            self.pub,
            *self.extra,
        ]
        if self.max_file_bytes is not None:
            limit = self.max_file_bytes
            args[:2] = [
                "-c",
                "import resource, runpy; resource.setrlimit(resource.RLIMIT_FSIZE, "
                f"({limit}, {limit})); runpy.run_module('matcher.service', "
                "run_name='__main__')",
            ]
        if self.snapshot_every is not None:
            args += ["--snapshot-every", str(self.snapshot_every)]
        self.child = Child(args, self.log_path).start()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until a ping is answered; fails with the log if the process dies first."""
        assert self.child is not None
        deadline = time.monotonic() + timeout
        probe = MatcherClient(self.router, timeout=0.2)
        try:
            while time.monotonic() < deadline:
                if not self.child.alive:
                    raise AssertionError(f"matcher exited early:\n{self.child.log()[-3000:]}")
                try:
                    probe.request("ping")
                    break
                except MatcherTimeout:
                    probe.reconnect()
            else:
                raise AssertionError(
                    f"matcher not ready in {timeout}s:\n{self.child.log()[-3000:]}"
                )
        finally:
            probe.close()
        self.client = MatcherClient(self.router, timeout=10.0)

    def request(self, op: str, **fields: Any) -> Any:
        assert self.client is not None
        return self.client.request(op, **fields)

    def raw(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.client is not None
        return self.client.request_raw(op, **fields)

    def state(self) -> tuple:
        """Everything a client can see of the state, plus the engine's state hash."""
        ping = self.request("ping", hash=True)
        book = self.request("book", depth=1000)
        trades = self.request("trades", limit=1000)
        book.pop("timestamp")
        return ping["seq"], ping["book_seq"], ping["state_hash"], book, trades

    def kill(self) -> None:
        self._close_client()
        if self.child is not None:
            self.child.kill()

    def stop(self) -> int | None:
        self._close_client()
        return self.child.stop() if self.child is not None else None

    def _close_client(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def log(self) -> str:
        return self.child.log() if self.child is not None else ""


def spawner(tmp_path: Path) -> Iterator[Callable[..., MatcherProcess]]:
    """The body of the `spawn` fixtures: makes MatcherProcess objects (logs in tmp_path) and
    kills what is left at teardown, so a failing test leaves no matcher behind."""
    made: list[MatcherProcess] = []

    def make(data_dir: Path, log_name: str = "matcher.log", **options: Any) -> MatcherProcess:
        process = MatcherProcess(data_dir, tmp_path / log_name, **options)
        made.append(process)
        return process

    try:
        yield make
    finally:
        for process in made:
            process.kill()


@pytest.fixture(name="spawn")
def spawn_fixture(tmp_path: Path) -> Iterator[Callable[..., MatcherProcess]]:
    yield from spawner(tmp_path)


@pytest.fixture
def matcher(spawn: Callable[..., MatcherProcess], tmp_path: Path) -> Any:
    process = spawn(tmp_path / "data").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def shared_matcher(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One matcher for the garbage tests: they must leave its state as it was anyway."""
    folder = tmp_path_factory.mktemp("shared")
    process = MatcherProcess(folder / "data", folder / "matcher.log")
    try:
        process.start()
        # Some state worth protecting: resting orders, a pending stop, trades.
        process.request("new_order", order_type="limit", side="sell", price="30000", quantity="2")
        process.request("new_order", order_type="limit", side="sell", price="30010", quantity="1")
        process.request("new_order", order_type="limit", side="buy", price="29990", quantity="1")
        process.request("new_order", order_type="market", side="buy", quantity="0.5")
        process.request(
            "new_stop_order",
            order_type="stop_loss",
            side="sell",
            stop_price="29000",
            quantity="0.1",
        )
        yield process
    finally:
        process.stop()


def limit(side: str, price: str, quantity: str, **extra: Any) -> dict[str, Any]:
    return {"order_type": "limit", "side": side, "price": price, "quantity": quantity, **extra}


# -- every op -------------------------------------------------------------------------


def test_every_op_round_trips(matcher: MatcherProcess) -> None:
    ping = matcher.request("ping")
    # seq 1 is the journal's rules record (docs/journal.md): the first order is 2.
    assert ping["symbol"] == SYMBOL and ping["seq"] == 1 and ping["book_seq"] == 0
    assert isinstance(ping["epoch"], int)

    ask = matcher.request("new_order", account="a", **limit("sell", "30000", "1"))
    assert ask["order_id"] == 2 and ask["status"] == "new" and ask["account"] == "a"
    assert (ask["price"], ask["quantity"], ask["remaining_quantity"]) == (
        "30000.00",
        "1.0000",
        "1.0000",
    )
    assert ask["symbol"] == SYMBOL and ask["order_type"] == "limit"
    bid = matcher.request(
        "new_order", account="b", client_order_id="bid-1", **limit("buy", "29000", "1")
    )
    assert bid["order_id"] == 3 and bid["client_order_id"] == "bid-1"

    book = matcher.request("book", depth=5)
    assert book["bids"] == [["29000.00", "1.0000"]] and book["asks"] == [["30000.00", "1.0000"]]
    assert book["book_seq"] == 2 and book["symbol"] == SYMBOL
    bbo = matcher.request("bbo")
    assert (bbo["bid_price"], bbo["bid_quantity"], bbo["ask_price"], bbo["ask_quantity"]) == (
        "29000.00",
        "1.0000",
        "30000.00",
        "1.0000",
    )

    market = matcher.request(
        "new_order", account="c", order_type="market", side="buy", quantity="0.4"
    )
    assert market["status"] == "filled" and market["filled_quantity"] == "0.4000"
    [trade] = market["trades"]
    assert (trade["trade_id"], trade["price"], trade["quantity"]) == (1, "30000.00", "0.4000")
    assert (trade["maker_fee"], trade["taker_fee"]) == ("1.2", "2.4")
    assert (trade["maker_order_id"], trade["taker_order_id"]) == (2, 4)
    assert trade["aggressor_side"] == "buy"

    ioc = matcher.request(
        "new_order", account="c", order_type="ioc", side="buy", price="30000", quantity="1"
    )
    assert ioc["status"] == "cancelled" and ioc["filled_quantity"] == "0.6000"
    assert ioc["reject_reason"] == "ioc_remainder_cancelled" and ioc["time_in_force"] == "ioc"
    fok = matcher.request(
        "new_order", account="c", order_type="fok", side="sell", price="29000", quantity="2"
    )
    assert fok["status"] == "cancelled" and fok["filled_quantity"] == "0.0000"
    assert fok["reject_reason"] == "fok_not_fillable"
    limit_fok = matcher.request(
        "new_order", account="c", time_in_force="fok", **limit("sell", "29000", "0.5")
    )
    assert limit_fok["status"] == "filled" and limit_fok["time_in_force"] == "fok"
    post_only = matcher.request(
        "new_order", account="c", post_only=True, **limit("sell", "29000", "0.1")
    )
    assert post_only["status"] == "rejected"
    assert post_only["reject_reason"] == "post_only_would_take"
    empty_market = matcher.request("new_order", order_type="market", side="buy", quantity="1")
    assert empty_market["status"] == "cancelled" and empty_market["filled_quantity"] == "0.0000"

    # Last trade: 29000. Stops of each type, and one that would trigger at once.
    stop_loss = matcher.request(
        "new_stop_order",
        account="d",
        order_type="stop_loss",
        side="sell",
        stop_price="28000",
        quantity="0.2",
    )
    assert stop_loss["status"] == "pending" and stop_loss["stop_price"] == "28000.00"
    assert stop_loss["price"] is None and stop_loss["remaining_quantity"] == "0.2000"
    stop_limit = matcher.request(
        "new_stop_order",
        account="d",
        order_type="stop_limit",
        side="buy",
        stop_price="31000",
        price="31100",
        quantity="0.2",
    )
    assert stop_limit["status"] == "pending" and stop_limit["price"] == "31100.00"
    take_profit = matcher.request(
        "new_stop_order",
        account="d",
        order_type="take_profit",
        side="sell",
        stop_price="32000",
        price="32000",
        quantity="0.3",
    )
    assert take_profit["status"] == "pending" and take_profit["order_type"] == "take_profit"
    refused = matcher.raw(
        "new_stop_order",
        account="d",
        order_type="stop_loss",
        side="buy",
        stop_price="28000",
        quantity="1",
    )
    assert refused["ok"] is False and refused["error"]["code"] == "would_trigger_immediately"

    rest = matcher.request("new_order", account="e", **limit("buy", "28500", "1"))
    smaller = matcher.request("amend_order", account="e", order_id=rest["order_id"], quantity="0.5")
    assert smaller["quantity"] == "0.5000" and smaller["price"] == "28500.00"
    moved = matcher.request("amend_order", account="e", order_id=rest["order_id"], price="28600")
    assert moved["price"] == "28600.00" and moved["status"] == "new"
    not_amendable = matcher.raw(
        "amend_order", account="d", order_id=stop_loss["order_id"], quantity="1"
    )
    assert not_amendable["error"]["code"] == "stop_not_amendable"

    cancelled = matcher.request("cancel_order", account="e", order_id=rest["order_id"])
    assert cancelled["status"] == "cancelled" and cancelled["remaining_quantity"] == "0.0000"
    again = matcher.raw("cancel_order", account="e", order_id=rest["order_id"])
    assert again["error"]["code"] == "order_not_open"
    cancelled_stop = matcher.request("cancel_order", account="d", order_id=take_profit["order_id"])
    assert cancelled_stop["status"] == "cancelled"

    got = matcher.request("get_order", account="e", order_id=rest["order_id"])
    assert got["status"] == "cancelled" and got["order_id"] == rest["order_id"]
    other = matcher.raw("get_order", account="someone-else", order_id=rest["order_id"])
    assert other["error"]["code"] == "unknown_order"
    open_orders = matcher.request("orders", account="d", status="open")
    assert [o["order_id"] for o in open_orders["orders"]] == [
        stop_loss["order_id"],
        stop_limit["order_id"],
    ]
    every = matcher.request("orders", account="e")
    assert [o["order_id"] for o in every["orders"]] == [rest["order_id"]]

    trades = matcher.request("trades", limit=10)["trades"]
    assert [t["trade_id"] for t in trades] == [3, 2, 1]
    assert [t["price"] for t in trades] == ["29000.00", "30000.00", "30000.00"]
    snapshot = matcher.request("snapshot")
    assert snapshot["last_trade_id"] == 3 and snapshot["epoch"] == ping["epoch"]
    assert snapshot["bids"] == [["29000.00", "0.5000"]] and snapshot["asks"] == []
    assert snapshot["bbo"]["bid_price"] == "29000.00"

    wrong_symbol = matcher.raw("bbo", symbol="ETH-USDT")
    assert wrong_symbol["error"]["code"] == "unknown_symbol"
    final = matcher.request("ping")
    assert final["seq"] == 17 and final["book_seq"] == snapshot["book_seq"]


def test_pipelined_replies_keep_the_request_order(matcher: MatcherProcess) -> None:
    assert matcher.client is not None
    sock = matcher.client._socket  # raw DEALER: replies are checked in arrival order
    requests = []
    for i in range(1000):
        kind = i % 5
        if kind == 0:
            request = {"op": "ping"}
        elif kind == 1:
            request = {"op": "new_order", **limit("buy", str(20000 + i % 50), "0.01")}
        elif kind == 2:
            request = {"op": "new_order", **limit("sell", str(40000 - i % 50), "0.01")}
        elif kind == 3:
            request = {
                "op": "new_order",
                "order_type": "market",
                "side": "sell",
                "quantity": "0.005",
            }
        else:
            request = {"op": "get_order", "order_id": "not-an-id"}  # an error reply
        request["req_id"] = f"r{i}"
        requests.append(request)
    for request in requests:
        sock.send(codec.encode_request(request))
    replies = []
    for _ in requests:
        assert sock.poll(10_000), "a reply is missing"
        replies.append(codec.decode_reply(sock.recv()))
    assert [reply["req_id"] for reply in replies] == [r["req_id"] for r in requests]
    assert all(reply["ok"] for i, reply in enumerate(replies) if i % 5 != 4)
    assert all(reply["error"]["code"] == "invalid_field" for reply in replies[4::5])
    order_ids = [
        reply["result"]["order_id"] for i, reply in enumerate(replies) if i % 5 in (1, 2, 3)
    ]
    assert order_ids == list(range(2, 602))  # seq order == request order (1: the rules)


# -- garbage ----------------------------------------------------------------------------

BAD_VALUES: dict[str, list[Any]] = {
    "order_type": ["stop", 3, [], {"x": 1}, True, b"limit", 1.5],
    "side": ["up", 0, [], {}, True, b"buy", float("nan")],
    "quantity": [
        "abc",
        [1],
        {"a": 1},
        True,
        b"1",
        -1,
        0,
        "0",
        "-1",
        "0.00001",
        float("nan"),
        float("inf"),
        float("-inf"),
        "NaN",
        "Infinity",
        "1e400",
        2**64 - 1,
        -(2**63),
        "9" * 41,
        "1000001",
    ],
    "price": [
        "abc",
        [1],
        {"a": 1},
        False,
        b"1",
        -1,
        0,
        "0.001",
        "-5",
        float("nan"),
        float("inf"),
        "nan",
        "1e400",
        2**64 - 1,
        -(2**63),
        "99999999999",
    ],
    "time_in_force": ["day", 1, [], True],
    "post_only": ["yes", 1, 0, [], {}],
    "client_order_id": ["", "x" * 65, 5, [], "bad\x00id", {"a": 1}],
    "stp": ["never", 2, [], True],
    "account": ["", 5, [], "x" * 65, "tab\there", {"a": 1}],
    "symbol": ["ETH-USDT", 5, [], {}, ""],
}
ORDER_ID_BAD = [
    "1x",
    -1,
    0,
    2**64 - 1,
    -(2**63),
    1.0,
    float("nan"),
    True,
    [],
    {},
    "",
    "99999999999999999999",
]
BOUNDED_BAD = [0, 1001, -1, "x", 1.5, float("inf"), True, [], 2**64 - 1]


def garbage_requests() -> list[tuple[str, dict[str, Any]]]:
    """(label, request) pairs the matcher must refuse without changing anything."""
    good_order = {"op": "new_order", "account": "garbage", **limit("buy", "1000", "1")}
    cases: list[tuple[str, dict[str, Any]]] = []
    for field, values in BAD_VALUES.items():
        for value in values:
            cases.append((f"new_order {field}={value!r}", {**good_order, field: value}))
    for field in ("order_type", "side", "quantity", "price"):
        cases.append(
            (f"new_order without {field}", {k: v for k, v in good_order.items() if k != field})
        )
    good_stop = {
        "op": "new_stop_order",
        "account": "garbage",
        "order_type": "stop_limit",
        "side": "buy",
        "stop_price": "50000",
        "price": "50100",
        "quantity": "1",
    }
    for value in BAD_VALUES["price"] + [None]:
        cases.append((f"new_stop_order stop_price={value!r}", {**good_stop, "stop_price": value}))
    cases.append(("stop_loss with a price", {**good_stop, "order_type": "stop_loss"}))
    cases.append(("stop type via new_order", {**good_order, "order_type": "stop_loss"}))
    cases.append(("market with a price", {**good_order, "order_type": "market"}))
    for op in ("cancel_order", "get_order"):
        for value in ORDER_ID_BAD + [None]:
            cases.append((f"{op} order_id={value!r}", {"op": op, "order_id": value}))
    cases.append(("cancel of an unknown order", {"op": "cancel_order", "order_id": 10**9}))
    cases.append(
        (
            "cancel of another account's order",
            {"op": "cancel_order", "order_id": 1, "account": "thief"},
        )
    )
    for field in ("quantity", "price"):
        for value in BAD_VALUES[field]:
            cases.append(
                (f"amend {field}={value!r}", {"op": "amend_order", "order_id": 1, field: value})
            )
    cases.append(("amend without changes", {"op": "amend_order", "order_id": 1}))
    cases.append(("amend below filled", {"op": "amend_order", "order_id": 1, "quantity": "0.5"}))
    for op, field in (("book", "depth"), ("trades", "limit"), ("orders", "limit")):
        for value in BOUNDED_BAD:
            cases.append((f"{op} {field}={value!r}", {"op": op, field: value}))
    cases.append(("orders status=closed", {"op": "orders", "status": "closed"}))
    odd_ops: list[Any] = [
        "fly",
        "",
        "PING",
        "new-order",
        5,
        None,
        [1, 2],
        {"op": "ping"},
        True,
        1.5,
        b"ping",
    ]
    for op in odd_ops:
        cases.append((f"op={op!r}", {"op": op}))
    cases.append(("no op at all", {"req_id": 1}))
    # Unknown fields are refused, not ignored: a typo must not change what an order does.
    cases.append(("new_order with a typo'd field", {**good_order, "postonly": True}))
    cases.append(("new_order with a stop_price", {**good_order, "stop_price": "900"}))
    cases.append(("new_stop_order with time_in_force", {**good_stop, "time_in_force": "fok"}))
    cases.append(("new_stop_order with post_only", {**good_stop, "post_only": True}))
    cases.append(
        ("cancel_order with a quantity", {"op": "cancel_order", "order_id": 1, "quantity": "1"})
    )
    cases.append(
        (
            "amend_order with a side",
            {"op": "amend_order", "order_id": 1, "side": "sell", "quantity": "0.5"},
        )
    )
    cases.append(("new_order with an int key", {**good_order, 7: "x"}))
    return cases


def deeply_nested_requests() -> list[tuple[str, bytes]]:
    """(label, frame): a value nested 1,000 deep, within what msgpack decodes (a Python
    repr of it raises RecursionError: an error message must not quote it)."""
    deep_list = b"\x91" * 1000 + b"\xc0"
    deep_map = (b"\x81" + msgpack.packb("k")) * 1000 + b"\xc0"
    order = {"op": "new_order", "req_id": 1, **limit("buy", "1000", "1")}
    cases = []
    for field in ("order_type", "side", "time_in_force", "stp", "symbol"):
        for kind, deep in (("list", deep_list), ("map", deep_map)):
            fields = {k: v for k, v in order.items() if k != field}
            frame = (
                codec.map_header(len(fields) + 1)
                + b"".join(msgpack.packb(k) + msgpack.packb(v) for k, v in fields.items())
                + msgpack.packb(field)
                + deep
            )
            cases.append((f"{field} = a {kind} 1,000 deep", frame))
    return cases


def garbage_frames() -> list[tuple[str, list[bytes]]]:
    """(label, frames) sent raw: not msgpack, not maps, bad envelopes, too large."""
    ping = msgpack.packb({"op": "ping", "req_id": "p"})
    new_order = msgpack.packb({"op": "new_order", "req_id": "n", **limit("buy", "1000", "1")})
    return [
        ("never-used msgpack byte", [b"\xc1"]),
        ("text", [b"this is not msgpack \xff\xfe"]),
        ("truncated map", [msgpack.packb({"op": "ping", "req_id": 1})[:-3]]),
        ("trailing bytes", [ping + b"\x00"]),
        ("array", [msgpack.packb(["ping", 1])]),
        ("int", [msgpack.packb(5)]),
        ("nil", [msgpack.packb(None)]),
        ("string", [msgpack.packb("ping")]),
        ("bin", [msgpack.packb(b"ping")]),
        ("float nan", [msgpack.packb(math.nan)]),
        ("deep nesting", [b"\x91" * 5000 + b"\xc0"]),
        ("ext type", [msgpack.packb(msgpack.ExtType(5, b"xyz"))]),
        ("map with int keys", [msgpack.packb({1: 2, 3: 4})]),
        ("map with a map key", [b"\x81\x81\xa1a\x01\x02"]),
        ("empty frame", [b""]),
        ("two empty frames", [b"", b""]),
        ("extra frame after a mutating request", [new_order, b"extra"]),
        ("three frames", [ping, ping, ping]),
        ("REQ envelope with an extra frame", [b"", new_order, b""]),
        ("REQ envelope around garbage", [b"", b"\xc1"]),
        ("1 MB frame", [msgpack.packb({"op": "new_order", "pad": "x" * (1 << 20)})]),
        ("1 MB of zeros", [bytes(1 << 20)]),
        ("64 KiB + 1 request", [msgpack.packb({"op": "ping", "pad": "x" * 65_530})]),
    ]


def _reply_frames(sock: zmq.Socket, timeout_ms: int = 5000) -> list[bytes] | None:
    if not sock.poll(timeout_ms):
        return None
    return sock.recv_multipart()


def test_garbage_requests_are_refused_and_change_nothing(shared_matcher: MatcherProcess) -> None:
    before = shared_matcher.state()
    assert before[4]["trades"], "the fixture made trades"
    codes: set[str] = set()
    for label, request in garbage_requests():
        keywords = isinstance(request.get("op"), str) and all(isinstance(k, str) for k in request)
        reply = shared_matcher.raw(**request) if keywords else None
        if reply is None:
            assert shared_matcher.client is not None
            req_id = 777_000 + len(codes)
            shared_matcher.client.send_raw(codec.encode_request({**request, "req_id": req_id}))
            reply = shared_matcher.client.recv_reply()
            assert reply["req_id"] == req_id, label
        assert reply["ok"] is False, f"{label}: accepted: {reply}"
        code = reply["error"]["code"]
        assert code not in ("internal_error", None), f"{label}: {reply}"
        assert reply["error"]["message"], label
        codes.add(code)
        assert shared_matcher.state() == before, f"{label} changed the state"
    assert {
        "invalid_field",
        "invalid_price",
        "invalid_quantity",
        "unknown_op",
        "unknown_symbol",
        "unknown_order",
    } <= codes
    assert shared_matcher.child is not None and shared_matcher.child.alive
    assert "Traceback" not in shared_matcher.log()


def test_a_req_client_sending_extra_frames_gets_its_error_reply(
    shared_matcher: MatcherProcess,
) -> None:
    """libzmq's REQ drops a reply without its empty delimiter, and then refuses to send:
    the error for a multi-frame request must carry the envelope like any other reply."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(shared_matcher.router)
    try:
        for extra in ([b"extra"], [b"", b"more"]):
            sock.send_multipart([codec.encode_request({"op": "ping", "req_id": 5}), *extra])
            assert sock.poll(5000), f"no reply to a request with {len(extra)} extra frame(s)"
            reply = codec.decode_reply(sock.recv())
            assert reply["ok"] is False and reply["error"]["code"] == "invalid_request", reply
        sock.send(codec.encode_request({"op": "ping", "req_id": 6}))  # the socket still works
        assert sock.poll(5000) and codec.decode_reply(sock.recv())["ok"] is True
    finally:
        sock.close(0)


def test_deeply_nested_values_are_refused_as_invalid(shared_matcher: MatcherProcess) -> None:
    before = shared_matcher.state()
    assert shared_matcher.client is not None
    for label, frame in deeply_nested_requests():
        shared_matcher.client.send_raw(frame)
        reply = shared_matcher.client.recv_reply()
        assert reply["ok"] is False, f"{label}: {reply}"
        assert reply["error"]["code"] in ("invalid_field", "unknown_symbol"), f"{label}: {reply}"
    assert shared_matcher.state() == before
    assert "Traceback" not in shared_matcher.log()


def test_a_frame_over_the_socket_limit_closes_only_its_connection(
    shared_matcher: MatcherProcess,
) -> None:
    before = shared_matcher.state()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(shared_matcher.router)
    try:
        sock.send(bytes(3 * 1024 * 1024))
        assert _reply_frames(sock, timeout_ms=1000) is None  # dropped by libzmq, unread
        sock.send(codec.encode_request({"op": "ping", "req_id": 1}))  # after a reconnect
        reply_frames = _reply_frames(sock, timeout_ms=10_000)
        assert reply_frames is not None and codec.decode_reply(reply_frames[0])["ok"]
    finally:
        sock.close(0)
    assert shared_matcher.state() == before


def test_garbage_frames_are_answered_or_dropped(shared_matcher: MatcherProcess) -> None:
    before = shared_matcher.state()
    context: zmq.Context = zmq.Context.instance()
    for label, frames in garbage_frames():
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(shared_matcher.router)
        try:
            sock.send_multipart(frames)
            reply_frames = _reply_frames(sock)
            assert reply_frames is not None, f"{label}: no reply"
            if frames[0] == b"" and len(frames) >= 2:
                assert reply_frames[0] == b"", f"{label}: REQ envelope not mirrored"
                reply_frames = reply_frames[1:]
            assert len(reply_frames) == 1, label
            reply = codec.decode_reply(reply_frames[0])
            assert reply["ok"] is False, f"{label}: {reply}"
            assert reply["error"]["code"] in ("invalid_request", "unknown_op"), f"{label}: {reply}"
        finally:
            sock.close(0)
        assert shared_matcher.state() == before, f"{label} changed the state"
    assert shared_matcher.child is not None and shared_matcher.child.alive
    assert "Traceback" not in shared_matcher.log()


def test_a_req_socket_gets_its_envelope_back(shared_matcher: MatcherProcess) -> None:
    sock: zmq.Socket = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(shared_matcher.router)
    try:
        sock.send(codec.encode_request({"op": "ping", "req_id": 41}))
        assert sock.poll(5000)
        reply = codec.decode_reply(sock.recv())
        assert reply == {"req_id": 41, "ok": True, "result": reply["result"]}
        assert reply["result"]["symbol"] == SYMBOL
        sock.send(b"\xc1")
        assert sock.poll(5000)
        bad = codec.decode_reply(sock.recv())
        assert bad["ok"] is False and bad["error"]["code"] == "invalid_request"
        assert bad["req_id"] is None
    finally:
        sock.close(0)


def test_odd_req_ids_are_echoed_or_nulled(shared_matcher: MatcherProcess) -> None:
    assert shared_matcher.client is not None
    client = shared_matcher.client
    for req_id, echoed in (
        (2**64 - 1, 2**64 - 1),
        (-(2**63), -(2**63)),
        ("x" * 1000, "x" * 1000),
        (True, None),
        (1.5, None),
        ([1], None),
        ({"a": 1}, None),
        (float("nan"), None),
    ):
        client.send_raw(codec.encode_request({"op": "ping", "req_id": req_id}))
        reply = client.recv_reply()
        assert reply["ok"] is True and reply["req_id"] == echoed


# -- market data ------------------------------------------------------------------------


def _subscriber(endpoint: str, prefix: bytes) -> zmq.Socket:
    sock: zmq.Socket = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 1_000_000)
    sock.setsockopt(zmq.SUBSCRIBE, prefix)
    sock.connect(endpoint)
    return sock


def _drain(sock: zmq.Socket, quiet_ms: int = 300) -> list[tuple[str, Any]]:
    """Every message until none arrives for `quiet_ms`."""
    messages = []
    while sock.poll(quiet_ms):
        messages.append(codec.decode_pub(sock.recv()))
    return messages


def _collect(sock: zmq.Socket, done: Any, timeout: float = 15.0) -> list[tuple[str, Any]]:
    """Messages until `done(messages)` holds (a slow machine may pause the feed)."""
    messages: list[tuple[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(messages):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not sock.poll(int(remaining * 1000)):
            break
        messages.append(codec.decode_pub(sock.recv()))
    return messages


def _wait_for_heartbeat(sock: zmq.Socket, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sock.poll(100):
            topic, body = codec.decode_pub(sock.recv())
            if topic.startswith("hb."):
                return body
    raise AssertionError("no heartbeat")


def test_pub_feed_is_sequenced_and_filterable(matcher: MatcherProcess) -> None:
    everything = _subscriber(matcher.pub, b"")
    trades_only = _subscriber(matcher.pub, f"trade.{SYMBOL}".encode())
    books_only = _subscriber(matcher.pub, b"book.")
    other_symbol = _subscriber(matcher.pub, b"trade.ETH-USDT")
    try:
        # A heartbeat proves the subscription is live (no slow-joiner loss after it).
        heartbeat = _wait_for_heartbeat(everything)
        assert heartbeat["symbol"] == SYMBOL and heartbeat["book_seq"] == 0
        assert heartbeat["last_trade_id"] == 0 and "epoch" in heartbeat
        time.sleep(0.2)  # the other subscriptions travel on their own connections
        requests = []
        for i in range(300):
            if i % 3 == 2:
                requests.append(
                    {
                        "op": "new_order",
                        "order_type": "market",
                        "side": "buy" if i % 2 else "sell",
                        "quantity": "0.015",
                    }
                )
            else:
                side = "buy" if i % 3 == 0 else "sell"
                price = 29_990 - i % 7 if side == "buy" else 30_010 + i % 7
                requests.append({"op": "new_order", **limit(side, str(price), "0.01")})
        assert matcher.client is not None
        replies = matcher.client.pipeline(requests)
        assert all(reply["ok"] for reply in replies)
        ping = matcher.request("ping")

        last_trade_id = matcher.request("trades", limit=1)["trades"][0]["trade_id"]

        def complete(messages: list[tuple[str, Any]]) -> bool:
            book_seqs = [b["book_seq"] for t, b in messages if t.startswith("book.")]
            trade_ids = [b["trade_id"] for t, b in messages if t.startswith("trade.")]
            return (
                bool(book_seqs)
                and book_seqs[-1] >= ping["book_seq"]
                and bool(trade_ids)
                and trade_ids[-1] >= last_trade_id
            )

        received = _collect(everything, complete)
        received += _drain(everything, quiet_ms=100)  # nothing beyond: checked below
        books = [body for topic, body in received if topic == f"book.{SYMBOL}"]
        trades = [body for topic, body in received if topic == f"trade.{SYMBOL}"]
        assert [b["book_seq"] for b in books] == list(range(1, ping["book_seq"] + 1))
        assert all(b["changes"] and b["epoch"] == heartbeat["epoch"] for b in books)
        for body in books:
            for side, price, quantity in body["changes"]:
                assert side in ("buy", "sell") and "." in price and isinstance(quantity, str)
        assert trades, "market orders traded"
        assert [t["trade_id"] for t in trades] == list(range(1, last_trade_id + 1))

        filtered = _collect(trades_only, lambda m: len(m) >= len(trades))
        filtered += _drain(trades_only, quiet_ms=100)
        assert [topic for topic, _ in filtered] == [f"trade.{SYMBOL}"] * len(trades)
        assert [body for _, body in filtered] == trades
        book_messages = _collect(books_only, lambda m: len(m) >= len(books))
        assert {topic for topic, _ in book_messages} == {f"book.{SYMBOL}"}
        assert [body for _, body in book_messages] == books
        assert _drain(other_symbol, quiet_ms=100) == []

        # Idle: heartbeats keep coming, carrying the current sequence numbers.
        idle = _wait_for_heartbeat(everything, timeout=3.0)
        assert idle["book_seq"] == ping["book_seq"] and idle["last_trade_id"] == len(trades)
    finally:
        for sock in (everything, trades_only, books_only, other_symbol):
            sock.close(0)


def test_errors_do_not_publish(shared_matcher: MatcherProcess) -> None:
    sub = _subscriber(shared_matcher.pub, b"book.")
    sub.setsockopt(zmq.SUBSCRIBE, b"trade.")
    sub.setsockopt(zmq.SUBSCRIBE, b"hb.")
    try:
        _wait_for_heartbeat(sub)  # subscribed for sure from here on
        for _ in range(20):
            with pytest.raises(MatcherError):
                shared_matcher.request("new_order", **limit("buy", "0.001", "1"))
        # The next heartbeat follows every message of those requests, if there were any.
        received = _collect(sub, lambda m: bool(m) and m[-1][0].startswith("hb."))
        assert [topic for topic, _ in received] == [f"hb.{SYMBOL}"]
    finally:
        sub.close(0)


def test_unicode_digits_are_invalid_fields(matcher: MatcherProcess) -> None:
    # '²'.isdigit() is True but int('²') raises: this once answered internal_error (and
    # logged a traceback, hence a matcher of its own).
    for request_fields in (
        {"op": "get_order", "order_id": "²"},
        {"op": "cancel_order", "order_id": "1²"},
        {"op": "book", "depth": "³"},
        {"op": "trades", "limit": "²"},
    ):
        reply = matcher.raw(**request_fields)
        assert reply["ok"] is False and reply["error"]["code"] == "invalid_field", reply
    assert "Traceback" not in matcher.log()


def test_an_internal_error_inside_the_engine_rebuilds_it_from_the_journal(tmp_path: Path) -> None:
    """Fault injection (no sockets needed): a core bug that raises half-way through a
    command must not leave a half-changed book serving the next request."""
    from matcher.protocol import CMD_NEW_ORDER
    from matcher.service import MatcherService
    from matcher.system import load_config

    config = load_config(symbols=["BTC-USDT"])
    service = MatcherService(config.symbols["BTC-USDT"], tmp_path, fsync="off")
    service.journal.open()
    published: list[bytes] = []

    def send(request: dict[str, Any]) -> dict[str, Any]:
        reply = codec.decode_reply(service.handle(codec.encode_request(request), 1, published))
        service.journal.commit()
        return reply

    assert send({"op": "new_order", **limit("buy", "100", "1")})["ok"]
    before = service.engine.state_hash()

    def half_then_crash(command: tuple) -> list:
        service.engine.book.bids.levels[10_000].total += 7  # corrupt, then fail
        raise RuntimeError("injected bug")

    service.engine._handlers[CMD_NEW_ORDER] = half_then_crash
    reply = send({"op": "new_order", **limit("buy", "100", "1")})
    assert reply["error"]["code"] == "internal_error"
    assert service.engine._handlers[CMD_NEW_ORDER] != half_then_crash  # a rebuilt engine
    assert service.engine.state_hash() == before
    service.engine.check()
    assert send({"op": "new_order", **limit("sell", "100", "1")})["result"]["status"] == "filled"
    service.journal.close()


def _service_with_one_order(tmp_path: Path) -> tuple[Any, Callable[[dict[str, Any]], bytes]]:
    """An in-process MatcherService (no sockets) on a real journal, one order committed;
    and a `handle` that leaves what it appends uncommitted, like a batch cut short."""
    from matcher.service import MatcherService
    from matcher.system import load_config

    config = load_config(symbols=["BTC-USDT"])
    service = MatcherService(config.symbols["BTC-USDT"], tmp_path, fsync="batch")
    service.journal.open()
    published: list[bytes] = []

    def handle(request: dict[str, Any]) -> bytes:
        return service.handle(codec.encode_request(request), 1, published)

    handle({"op": "new_order", **limit("buy", "100", "1")})
    service.journal.commit()
    return service, handle


def _snapshot_seqs(tmp_path: Path) -> list[int]:
    from matcher.service import snapshot_dir
    from matcher.snapshot import list_snapshots

    return [seq for seq, _ in list_snapshots(snapshot_dir(tmp_path, "BTC-USDT"))]


def test_shutdown_commits_the_batch_before_its_snapshot_or_writes_none(tmp_path: Path) -> None:
    """A second signal can stop a batch after its appends, before its commit. Shutdown
    must make those records durable first; when it cannot (here the journal's file
    descriptor is swapped for a read-only one: a real EBADF on write), no snapshot."""
    import os

    service, handle = _service_with_one_order(tmp_path)
    handle({"op": "new_order", **limit("buy", "99", "1")})  # appended, not committed
    service.shutdown()
    assert _snapshot_seqs(tmp_path) == [2]

    failing, handle = _service_with_one_order(tmp_path / "failing")
    handle({"op": "new_order", **limit("buy", "99", "1")})
    read_only = os.open(os.devnull, os.O_RDONLY)
    os.dup2(read_only, failing.journal._fd)
    os.close(read_only)
    failing.shutdown()
    assert _snapshot_seqs(tmp_path / "failing") == []  # nothing ahead of the journal


def test_an_engine_that_cannot_be_rebuilt_stops_the_matcher_without_a_snapshot(
    tmp_path: Path,
) -> None:
    """A core bug, and then the journal cannot be replayed (damaged on disk): the
    half-changed engine must neither serve on nor be snapshotted."""
    from matcher.protocol import CMD_NEW_ORDER
    from matcher.service import journal_dir

    service, handle = _service_with_one_order(tmp_path)
    [segment] = sorted(journal_dir(tmp_path, "BTC-USDT").iterdir())
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF  # the only record's CRC no longer matches
    segment.write_bytes(bytes(data))

    def half_then_crash(command: tuple) -> list:
        service.engine.book.bids.levels[10_000].total += 7
        raise RuntimeError("injected bug")

    service.engine._handlers[CMD_NEW_ORDER] = half_then_crash
    with pytest.raises(SystemExit) as stopped:
        handle({"op": "new_order", **limit("buy", "100", "1")})
    assert stopped.value.code == 3
    service.shutdown()
    assert _snapshot_seqs(tmp_path) == []


def test_a_busy_endpoint_is_refused_with_one_clear_line(tmp_path: Path) -> None:
    taken = zmq.Context.instance().socket(zmq.ROUTER)
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    try:
        child = Child(
            [
                "-m",
                "matcher.service",
                "--symbol",
                "BTC-USDT",
                "--data-dir",
                str(tmp_path),
                "--router",
                f"tcp://127.0.0.1:{port}",
                "--pub",
                f"tcp://127.0.0.1:{free_ports(1)[0]}",
            ],
            tmp_path / "m.log",
        ).start()
        assert child.process is not None
        assert child.process.wait(timeout=30) == 2
        log = child.log()
        assert f"cannot start (tcp://127.0.0.1:{port}" in log and "Traceback" not in log
    finally:
        taken.close(0)


def test_serving_leaves_no_cyclic_garbage(tmp_path: Path) -> None:
    """The loop freezes what each batch leaves alive (gc.freeze), so a reference cycle
    made while serving would never be collected: there must be none, for any request."""
    import gc

    from matcher.service import MatcherService
    from matcher.system import load_config

    service = MatcherService(load_config(None).symbols[SYMBOL], tmp_path, fsync="off")
    service.journal.open()
    requests: list[bytes] = [b"\xc1", b"\x93\x01\x02\x03", msgpack.packb({"op": ["x"]})]
    for i in range(400):
        side = ("buy", "sell")[i % 2]
        price = f"{30_000 + (i % 7 - 3) * 10}"  # a narrow band: many orders cross
        requests += [
            codec.encode_request(
                {
                    "op": "new_order",
                    "req_id": i,
                    "side": side,
                    "order_type": ("limit", "market", "ioc", "fok")[i % 4],
                    "price": None if i % 4 == 1 else price,
                    "quantity": "0.5",
                    "client_order_id": f"c{i % 450}",
                    "stp": "cancel_both",
                    "account": ("alice", "bob")[i % 3 // 2],
                }
            ),
            codec.encode_request(
                {
                    "op": "new_stop_order",
                    "req_id": f"s{i}",
                    "side": side,
                    "order_type": "stop_limit",
                    "stop_price": price,
                    "price": price,
                    "quantity": "0.1",
                }
            ),  # some trigger at once
            codec.encode_request(
                {
                    "op": "new_order",
                    "req_id": f"d{i}",
                    "side": side,
                    "order_type": "limit",
                    "price": price,
                    "quantity": "0.5",
                    "client_order_id": f"c{i % 450}",
                }
            ),  # a duplicate
            codec.encode_request({"op": "cancel_order", "order_id": i // 2 + 1}),
            codec.encode_request({"op": "amend_order", "order_id": i + 1, "quantity": "0.2"}),
            codec.encode_request({"op": "new_order", "side": "up", "quantity": math.nan}),
            codec.encode_request(
                {
                    "op": ("book", "bbo", "trades", "get_order", "ping")[i % 5],
                    "order_id": i + 1,
                    "depth": 5,
                }
            ),
        ]
    gc.collect()
    gc.disable()
    try:
        published: list[bytes] = []
        for request in requests:
            service.handle(request, 1_764_000_000_000_000 + len(published), published)
        service.journal.commit()
        assert len(published) > 1000 and service.engine.trade_id > 200  # it really traded
        assert gc.collect() == 0
    finally:
        gc.enable()
        service.journal.close()
