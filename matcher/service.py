"""The matcher process of one symbol: ROUTER in, PUB out, journal, one loop.

Lifecycle, top to bottom: recover (newest snapshot + journal replay), bind, loop, shut
down (snapshot, close). A signal only sets `should_exit`; a second one exits at once.

One loop iteration (docs/architecture.md, docs/protocol.md):
  1. poll the ROUTER (the timeout also drives heartbeats);
  2. drain up to MAX_BATCH requests with plain recv() calls (3-4x faster than
     recv_multipart here), all of them before handling any;
  3. for each: decode, validate, stamp (seq, ts), apply to the engine, append the command
     to the journal, and build its reply and market-data messages;
  4. commit the journal once (group commit) - nothing is acknowledged before that;
  5. send the replies in request order, then publish;
  6. freeze what the batch left alive out of the cyclic GC's reach (docs/architecture.md).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import zmq
import zmq.backend
from zmq.auth.thread import ThreadAuthenticator

from matcher import codec
from matcher.book import Order
from matcher.config import SymbolConfig
from matcher.curve import (
    Peer,
    ServerCurve,
    exposure,
    make_server,
    server_curve,
    start_authenticator,
)
from matcher.engine import NO_CANDLES_VERSION, Engine
from matcher.files import FolderLock, FolderLocked
from matcher.journal import SEGMENT_BYTES, Journal, JournalCorrupt
from matcher.lifeline import exit_with_parent
from matcher.metrics import MatcherMetrics
from matcher.packed_views import PackedViews
from matcher.protocol import (
    CMD_CANCEL_ALL,
    CMD_NEW_ORDER,
    CMD_NEW_STOP,
    EV_LEVEL,
    EV_TRADE,
    Code,
    CommandError,
)
from matcher.quoting import shown
from matcher.rules import differences, rules_command, rules_of
from matcher.snapshot import list_snapshots, valid_snapshots, write_snapshot
from matcher.system import load_for
from matcher.units import CachedUnits, Units
from matcher.validation import (
    Validator,
    account_of,
    bounded_int,
    deadline_refusal,
    interval_of,
    order_reference,
    time_of,
    trade_id_of,
)
from matcher.views import Views

log = logging.getLogger("matchwire.matcher")

MAX_BATCH = 512
MAX_FRAME_BYTES = 2 * 1024 * 1024
GC_THRESHOLD = 100_000
HEARTBEAT_SECONDS = 1.0
PUB_HWM = 1_000_000
CHILD_MAX_FD = 65_536  # a snapshot child closes its inherited descriptors up to this
PROBE_LOG_EVERY = 60  # while the journal cannot be written: one log line per minute of probes
# pyzmq's Socket.send is a Python wrapper (routing_id/group handling) around the Cython
# send: calling the latter directly saves ~0.2 us of the ~0.45 us per frame, and the
# loop sends 4-5 frames per order.
raw_send = zmq.backend.Socket.send
gc_freeze = gc.freeze


class RecoveryError(Exception):
    """The journal cannot be replayed onto the snapshot: refuse to start."""


class NothingToCancel(Exception):
    """A cancel_all that finds no open order: answered with an empty list, not applied
    and not journaled (a no-op need not take a seq; docs/protocol.md)."""


class RulesMismatch(RecoveryError):
    """The configured rules differ from the journaled ones and cannot (or may not) be
    applied: refuse to start, naming each rule (docs/journal.md, "Rules")."""


# The ops that act as an account: an account key's request without `account` acts as its own.
ACCOUNT_OPS = frozenset(
    (
        "new_order",
        "new_stop_order",
        "cancel_order",
        "amend_order",
        "get_order",
        "orders",
        "cancel_all",
    )
)


class Keyed(bytes):
    """A request frame received under CURVE, with the Peer its key names (None: unlisted)."""

    peer: Peer | None


def journal_dir(data_dir: Path, symbol: str) -> Path:
    return data_dir / symbol / "journal"


def snapshot_dir(data_dir: Path, symbol: str) -> Path:
    return data_dir / symbol / "snapshots"


def new_engine(units: Units) -> Engine:
    return Engine(units.maker_rate, units.taker_rate)


def recover(
    units: Units,
    data_dir: Path,
    journal: Journal,
    progress: Any = None,
    until_seq: int | None = None,
) -> tuple[Engine, int]:
    """Newest valid snapshot + replay of the journal after it. Returns (engine, replayed)."""
    engine = load_snapshot(units, data_dir, journal, until_seq)
    return engine, replay_into(engine, journal, progress, until_seq)


def load_snapshot(
    units: Units, data_dir: Path, journal: Journal, until_seq: int | None = None
) -> Engine:
    """The engine of the newest snapshot that reads, checks out and decodes (at or before
    until_seq); else a fresh engine, for a replay of the whole journal. Each one skipped
    is logged with its file and the reason (docs/journal.md, "Recovery")."""
    for seq, path, body in valid_snapshots(snapshot_dir(data_dir, units.symbol), log.warning):
        if until_seq is not None and seq > until_seq:
            return new_engine(units)
        try:
            engine = snapshot_engine(codec.decode_state(body), whole_history(journal))
            if engine.seq != seq:
                raise ValueError(f"its state is at seq {engine.seq}")
        except Exception as exc:  # msgpack, a missing key, another state version...
            reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            log.warning(
                "snapshot: skipping undecodable %s: %s; trying an older one or the whole journal",
                path,
                reason,
            )
            continue
        return engine
    return new_engine(units)


def whole_history(journal: Journal) -> bool:
    """Does the journal still start at seq 1 (no segment pruned)? O(files)."""
    segments = journal.segments()
    return bool(segments) and segments[0][0] == 1


def snapshot_engine(state: dict[str, Any], whole_history: bool) -> Engine:
    """The engine of a decoded snapshot.

    A snapshot of the old code has no candles (state version 1). While the journal holds
    the whole history, replaying it rebuilds them exactly, so such a snapshot raises
    ValueError, for recovery to pass it over (an older snapshot or the whole journal);
    once the first segments are pruned, it is taken with a warning and the candles start
    empty from its seq (docs/journal.md, "Candles").
    """
    engine = Engine.from_state(state, without_candles=not whole_history)
    if state.get("version") == NO_CANDLES_VERSION:
        log.warning(
            "snapshot at seq %s has no candles (written before they were state) and "
            "the journal's first segments are pruned: candles start empty from there",
            state["seq"],
        )
    return engine


def replay_into(
    engine: Engine, journal: Journal, progress: Any = None, until_seq: int | None = None
) -> int:
    """Apply the journal's records after engine.seq; a gap or a refusal is an error, and
    so is a journal that ends before engine.seq (a snapshot ahead of the journal)."""
    replayed = 0
    start_seq = engine.seq
    apply = engine.apply
    decode = codec.decode_command
    last_seq = 0
    for payload in journal.records(after_seq=start_seq):
        command = decode(payload)
        seq = last_seq = command[1]
        if seq <= engine.seq:
            continue
        if until_seq is not None and seq > until_seq:
            break
        if seq != engine.seq + 1:
            raise RecoveryError(f"journal gap: record {seq} follows {engine.seq}")
        try:
            apply(command)
        except CommandError as exc:
            raise RecoveryError(f"record {seq} was refused on replay: {exc.code}") from exc
        replayed += 1
        if progress is not None and not replayed % 100_000:
            progress(replayed, seq)
    if last_seq < start_seq:
        # Its records after last_seq would be in no journal: new ones would follow a hole.
        raise RecoveryError(
            f"the journal ends at seq {last_seq}, before the newest snapshot (seq "
            f"{start_seq}): the snapshot holds commands the journal lacks; move that "
            f"snapshot aside to recover from the journal and an older snapshot"
        )
    return replayed


class MatcherService:
    def __init__(
        self,
        config: SymbolConfig,
        data_dir: Path,
        fsync: str = "batch",
        snapshot_every: int = 100_000,
        router_endpoint: str | None = None,
        pub_endpoint: str | None = None,
        prune_segments: bool = False,
        segment_bytes: int = SEGMENT_BYTES,
        apply_rules: bool = False,
        curve: ServerCurve | None = None,
        metrics_address: tuple[str, int] | None = None,
    ) -> None:
        self.config = config
        self.metrics_address = metrics_address  # (host, port) to export /metrics on; None: off
        self.apply_rules = apply_rules  # journal a rules change instead of refusing it
        self.curve = curve  # CurveZMQ on both sockets (matcher/curve.py); None: NULL
        self.authenticator: ThreadAuthenticator | None = None
        self.prune_segments = prune_segments
        self.symbol = config.symbol
        self.units = CachedUnits(config)
        self.views = Views(self.units)
        self.validator = Validator(self.units)
        self.data_dir = Path(data_dir)
        self.router_endpoint = router_endpoint or config.order_endpoint
        self.pub_endpoint = pub_endpoint or config.feed_endpoint
        self.snapshot_every = snapshot_every
        self.journal = Journal(
            journal_dir(self.data_dir, self.symbol),
            fsync=fsync,
            segment_bytes=segment_bytes,
            log=log.warning,
        )
        self.engine = new_engine(self.units)
        self.epoch = time.time_ns() // 1000
        self.packed = PackedViews(self.views, self.epoch)
        self.should_exit = False
        self.last_snapshot_seq = 0
        self.snapshot_child: tuple[int, int] | None = None  # (pid, seq) of a snapshot being written
        self.snapshot_started = 0.0  # its fork's perf_counter
        # The seq of the last command appended to the journal, and whether a commit
        # failed: a snapshot must never hold a command the journal may lack.
        self.journaled_seq = 0
        self.journal_failed = False
        self.engine_suspect = (
            False  # a core bug's half-changed engine that recovery failed to replace
        )
        # One writer per symbol folder: held from start to the end of shutdown.
        self.lock = FolderLock(self.data_dir / self.symbol)
        # The journal cannot be written (disk full): mutating ops are refused with
        # journal_unavailable, reads serve the last durable state, a probe write each
        # heartbeat tells when to accept again (docs/operations.md, "Disk full").
        self.journal_down = False
        self.journal_error = ""
        self.failed_probes = 0
        self.last_ts = 0
        self.topic_heartbeat = f"hb.{self.symbol}".encode()
        # A PUB frame is topic + TOPIC_END + msgpack body (codec.encode_pub): the hot
        # messages prepend this prefix to their pre-packed body.
        self.book_prefix = f"book.{self.symbol}".encode() + codec.TOPIC_END
        self.trade_prefix = f"trade.{self.symbol}".encode() + codec.TOPIC_END
        self.bad_requests = 0
        self.internal_errors = 0
        # Plain dicts the hot path increments (matcher/metrics.py reads them when scraped).
        self.metrics = MatcherMetrics(self)
        self._applied = self.metrics.applied
        self._answered = self.metrics.queries
        self.context: zmq.Context | None = None
        self.router: zmq.Socket | None = None
        self.pub: zmq.Socket | None = None
        self._cancel_all_targets: list[Order] = []  # what the cancel_all being served cancels
        self._queries = {
            "ping": self._ping,
            "get_order": self._get_order,
            "orders": self._orders,
            "book": self._book,
            "bbo": self._bbo,
            "trades": self._trades,
            "candles": self._candles,
            "ticker": self._ticker,
            "snapshot": self._snapshot,
        }
        self._parsers = {
            "new_order": self.validator.new_order,
            "new_stop_order": self.validator.new_stop,
            "cancel_order": self._cancel_command,
            "amend_order": self._amend_command,
            "cancel_all": self._cancel_all_command,
        }
        # While the journal is down, `_parsers` is this map instead: no per-request check.
        self._accepting = self._parsers
        self._refusing = {op: self._refuse_mutation for op in self._parsers}

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        started = time.perf_counter()
        self.lock.acquire()  # FolderLocked: before anything reads or repairs the folder
        self.journal.open()
        # Recovery allocates up to millions of objects that all stay alive: cycle
        # collections meanwhile only rescan them (measured: -30% CPU on a 1M-record
        # restart). Freezing them afterwards keeps them out of every later collection.
        gc.disable()
        try:
            self.engine, replayed = recover(self.units, self.data_dir, self.journal)
        finally:
            gc.enable()
        gc.freeze()
        self.last_ts = self.engine.ts  # timestamps never go back, even if the clock does
        self.last_snapshot_seq = self.engine.seq - replayed
        self.journaled_seq = self.engine.seq
        log.info(
            "%s recovered to seq %d (%d records replayed) in %.3fs",
            self.symbol,
            self.engine.seq,
            replayed,
            time.perf_counter() - started,
        )
        self.bind_rules()
        # Orders hold no reference cycles: the cyclic GC only costs time here. Freeze what
        # recovery built and make young-generation passes rare (measured: ~20% of the
        # core's time on a growing book with the default thresholds).
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD, 50, 100)
        self.context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.RCVHWM, 100_000)
        # A frame over this closes its connection inside libzmq, before it is buffered
        # whole: bounded memory. Under it, a frame over codec.MAX_REQUEST_BYTES is
        # answered with invalid_request.
        self.router.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        self.router.setsockopt(zmq.SNDHWM, 100_000)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.pub = self.context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, PUB_HWM)
        self.pub.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:  # only listed keys connect (matcher/curve.py)
            self.authenticator = start_authenticator(self.context, self.curve.peers)
            make_server(self.router, self.curve.secret)
            make_server(self.pub, self.curve.secret)
        self.router.bind(self.router_endpoint)
        self.pub.bind(self.pub_endpoint)
        log.info(
            "%s serving on %s, publishing on %s (fsync=%s)",
            self.symbol,
            self.router_endpoint,
            self.pub_endpoint,
            self.journal.fsync,
        )
        if self.metrics_address is not None:
            host, port = self.metrics_address
            try:
                self.metrics.serve(host, port)
            except OSError as exc:
                raise OSError(
                    f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
                ) from None
            log.info("%s metrics on http://%s:%d/metrics", self.symbol, host, port)

    def bind_rules(self) -> None:
        """Check the configured rules against the journaled ones (docs/journal.md, "Rules").

        A new journal gets the configured rules as its first record; a journal of the old
        code (no rules record) adopts them once, with a warning; a difference refuses to
        start (RulesMismatch) unless `apply_rules`, which journals the change."""
        configured = rules_of(self.config)
        journaled = self.engine.rules
        if journaled is None:
            if self.engine.seq:
                log.warning(
                    "%s: the journal (seq %d) has no rules record (written before "
                    "rules were journaled): adopting the configured rules %s; its "
                    "integers are read on that grid from now on",
                    self.symbol,
                    self.engine.seq,
                    ", ".join(configured),
                )
            self._journal_rules(configured)
        elif differences(journaled, configured):
            changes = "; ".join(differences(journaled, configured))
            if not self.apply_rules:
                raise RulesMismatch(
                    f"the configured rules differ from the journaled ones: {changes} (start "
                    f"with --apply-rules to journal the change, or configure the journaled "
                    f"rules)"
                )
            self._journal_rules(configured)
            log.warning("%s: rules changed at seq %d: %s", self.symbol, self.engine.seq, changes)
        grid_units = self.engine.grid_units
        if grid_units is not None and grid_units != configured[:2]:
            self._use_grid_units(grid_units)

    def _journal_rules(self, rules: tuple[str, ...]) -> None:
        seq = self.engine.seq + 1
        self.last_ts = max(time.time_ns() // 1000, self.last_ts)
        command = rules_command(seq, self.last_ts, rules)
        try:
            self.engine.apply(command)
        except CommandError as exc:  # e.g. a resting order off the new grid
            raise RulesMismatch(f"the rules change is refused: {exc.message}") from None
        self.journal.append(seq, codec.encode_command(command))
        self.journal.commit()
        self.journaled_seq = seq

    def _use_grid_units(self, grid_units: tuple[str, str]) -> None:
        """Integers finer than tick and lot (after a rules change): convert with them."""
        old_validator = self.validator
        self.units = CachedUnits(self.config, grid_units)
        self.views = Views(self.units)
        self.validator = Validator(self.units)
        self.packed = PackedViews(self.views, self.epoch)
        for op, parse in list(self._parsers.items()):
            if getattr(parse, "__self__", None) is old_validator:
                self._parsers[op] = getattr(self.validator, parse.__name__)

    def install_signal_handlers(self) -> None:
        def handle(signum: int, frame: Any) -> None:
            if self.should_exit:
                raise SystemExit(1)  # second signal: exit now
            self.should_exit = True

        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGTERM, handle)

    def run(self) -> None:
        assert self.router is not None
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        next_heartbeat = 0.0
        while not self.should_exit:
            now = time.monotonic()
            if now >= next_heartbeat:
                self._heartbeat()
                if self.journal_down:
                    self._probe_journal()
                next_heartbeat = now + HEARTBEAT_SECONDS
            timeout_ms = max(1, min(100, int((next_heartbeat - now) * 1000)))
            if poller.poll(timeout_ms):
                self.serve_batch()
            elif self.snapshot_child is not None:
                self.reap_snapshot()

    def shutdown(self) -> None:
        self.metrics.stop()
        self.reap_snapshot(wait=True)
        if not self.journal_failed:
            # A second signal can stop a batch between its appends and its group commit:
            # those records must be on disk before a snapshot that holds them is, or a
            # crash between the two would leave the snapshot ahead of the journal.
            try:
                self.journal.commit()
            except Exception as exc:
                self.journal_failed = True
                log.error("%s journal commit at shutdown failed: %s", self.symbol, exc)
        if self.journal_failed or self.journaled_seq != self.engine.seq or self.engine_suspect:
            # A failed write/fsync, an exit between apply and append, or an engine a core
            # bug left half-changed: a snapshot now could hold what the journal lacks.
            log.error(
                "%s no shutdown snapshot: engine at seq %d, journal at seq %d%s",
                self.symbol,
                self.engine.seq,
                self.journaled_seq,
                " (a commit failed)"
                if self.journal_failed
                else " (the engine could not be rebuilt)"
                if self.engine_suspect
                else "",
            )
        elif self.engine.seq > self.last_snapshot_seq:
            try:
                self.take_snapshot()
            except OSError as exc:  # a full disk: the journal holds everything anyway
                log.error(
                    "%s no shutdown snapshot at seq %d: %s", self.symbol, self.engine.seq, exc
                )
        self.journal.close()
        for sock in (self.router, self.pub):
            if sock is not None:
                sock.close(0)
        if self.authenticator is not None:
            self.authenticator.stop()
        if self.context is not None:
            self.context.term()
        log.info("%s stopped at seq %d", self.symbol, self.engine.seq)
        self.lock.release()  # last: nothing of this process touches the folder after it

    def take_snapshot(self) -> None:
        """Write a snapshot of the current state, here and now (shutdown)."""
        self._write_snapshot()
        self.last_snapshot_seq = self.engine.seq
        if self.prune_segments:
            self.prune_journal()

    def start_snapshot(self) -> None:
        """Write a snapshot of the current state from a forked child while this process
        keeps serving: exporting and encoding a book of 1,000,000 orders takes ~1.3 s,
        which would stop the loop. The child sees the state as of the fork
        (copy-on-write; its pages are copied as it reads them, so memory can grow by up
        to the heap's size meanwhile). Only one child at a time; `reap_snapshot` collects
        it. Called between batches, after the journal commit: the snapshot never holds a
        command the journal lacks."""
        seq = self.engine.seq
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:  # no memory or no process slot: serve on, retry later
            log.error("%s cannot fork a snapshot child at seq %d: %s", self.symbol, seq, exc)
            self.last_snapshot_seq = seq
            return
        if pid == 0:
            # The child: write and leave at once, whatever happens. It closes what it
            # inherited (the ZeroMQ sockets, the journal) so that a parent that dies
            # meanwhile can be restarted on the same endpoints.
            # (The folder lock is a POSIX lock: a child never holds it, so the parent's
            # death frees it even while this child still writes.)
            code = 1
            try:
                # A matcher killed meanwhile takes its snapshot child along: an orphan
                # nobody supervises, holding up to a heap's worth of memory and writing
                # into the folder the restarted matcher snapshots and cleans.
                exit_with_parent(parent, signal.SIGKILL)
                os.closerange(3, CHILD_MAX_FD)
                self._write_snapshot(f" (child {os.getpid()})")
                code = 0
            except OSError as exc:  # a full disk: one line, serving goes on
                log.error("%s snapshot at seq %d failed: %s", self.symbol, seq, exc)
            except BaseException:
                log.exception("%s snapshot at seq %d failed", self.symbol, seq)
            finally:
                os._exit(code)
        self.snapshot_child = (pid, seq)
        self.snapshot_started = time.perf_counter()

    def reap_snapshot(self, wait: bool = False) -> None:
        """Collect a finished snapshot child (or wait for it); then prune if asked.

        A failed child is logged and not retried before another `snapshot_every`
        records: the journal still holds everything, recovery just replays more."""
        if self.snapshot_child is None:
            return
        pid, seq = self.snapshot_child
        done, status = os.waitpid(pid, 0 if wait else os.WNOHANG)
        if not done:
            return
        self.snapshot_child = None
        self.last_snapshot_seq = seq
        code = os.waitstatus_to_exitcode(status)
        self.metrics.snapshot_seconds.observe(time.perf_counter() - self.snapshot_started)
        self.metrics.snapshots["failed" if code else "ok"] += 1
        if code != 0:
            log.error("%s snapshot child for seq %d exited with %d", self.symbol, seq, code)
        elif self.prune_segments:
            self.prune_journal()

    def _write_snapshot(self, writer: str = "") -> None:
        started = time.perf_counter()
        # The exported state is a large temporary structure with no cycles: collections
        # while it is built would only rescan it.
        gc.disable()
        try:
            body = codec.encode_state(self.engine.export_state())
        finally:
            gc.enable()
        write_snapshot(snapshot_dir(self.data_dir, self.symbol), self.engine.seq, body)
        log.info(
            "%s snapshot at seq %d (%d bytes) in %.3fs%s",
            self.symbol,
            self.engine.seq,
            len(body),
            time.perf_counter() - started,
            writer,
        )

    def prune_journal(self) -> None:
        """Delete the segments every kept snapshot makes unnecessary.

        Recovery may fall back to the oldest kept snapshot (when the newest is damaged),
        so only records at or before *its* seq are pruned. The journal then no longer
        holds the whole history: `run.py replay --csv/--verify` need the first record.
        """
        kept = list_snapshots(snapshot_dir(self.data_dir, self.symbol))
        if not kept:
            return
        deleted = self.journal.prune(min(seq for seq, _ in kept) + 1)
        if deleted:
            log.info(
                "%s pruned %d journal segment(s) up to %s",
                self.symbol,
                len(deleted),
                deleted[-1].name,
            )

    # -- the loop ------------------------------------------------------------------

    def serve_batch(self) -> None:
        """Drain, apply, commit once, reply, publish."""
        router = self.router
        assert router is not None and self.pub is not None
        # Locals, not attributes: this loop runs once per request. `router.rcvmore` goes
        # through pyzmq's attribute lookup (~2.7 us); getsockopt costs a third of that. A
        # ROUTER message always has a frame after the identity, so one check per request.
        recv = router.recv
        body = recv if self.curve is None else self._recv_keyed  # the sender's key too
        more = router.getsockopt
        RCVMORE, EVENTS, POLLIN = zmq.RCVMORE, zmq.EVENTS, zmq.POLLIN
        NOBLOCK = zmq.NOBLOCK
        handle = self.handle if self.curve is None else self.handle_keyed
        replies: list[tuple[bytes, bytes | None, bytes]] = []
        published: list[bytes] = []
        ts = max(time.time_ns() // 1000, self.last_ts)  # one clock read per batch, monotonic
        self.last_ts = ts
        # Drain first, then handle: two tight loops keep each one's code and data in the
        # CPU caches (measured: interleaving them made each request ~25% slower).
        requests: list[tuple[bytes, list[bytes]]] = []
        for _ in range(MAX_BATCH):
            try:
                identity = recv(NOBLOCK)
            except zmq.Again:
                break
            frames = [body()]
            while more(RCVMORE):
                frames.append(body())
            requests.append((identity, frames))
            if len(requests) == 1 and not int(more(EVENTS)) & POLLIN:
                break  # a lone request: this check costs ~2.5 us, pyzmq's Again ~6 us
        was_down = self.journal_down
        seq_before = self.engine.seq
        started = time.perf_counter()  # three clock reads per batch, none per request
        for identity, frames in requests:
            delimiter: bytes | None = None
            if len(frames) >= 2 and frames[0] == b"":
                delimiter = b""  # a REQ client's envelope: mirror it, even on an error
                frames = frames[1:]
            if len(frames) != 1:
                reply = self._bad(None, f"expected one request frame, got {len(frames)}")
            else:
                reply = handle(frames[0], ts, published)
            replies.append((identity, delimiter, reply))
        handled = time.perf_counter()
        metrics = self.metrics
        metrics.batch_size.observe(len(requests))
        metrics.batch_seconds.observe(handled - started)
        if not self.journal_down:
            try:
                self.journal.commit()  # group commit: one fsync for the whole batch
                if self.engine.seq != seq_before:
                    metrics.commit_seconds.observe(time.perf_counter() - handled)
            except OSError as exc:  # disk full: roll the batch back, refuse until writable
                self._journal_write_failed(exc)
            except BaseException:
                self.journal_failed = True  # nothing of this batch is acknowledged
                raise
        if self.journal_down and not was_down:
            # The batch was rolled back: none of its replies may stand (a query may have
            # seen its undurable changes), none of its market data is published.
            replies = self._refused_replies(replies)
            published = []
        send = raw_send.__get__(router)
        for identity, delimiter, reply in replies:
            send(identity, zmq.SNDMORE)
            if delimiter is not None:
                send(delimiter, zmq.SNDMORE)
            send(reply)
        publish = raw_send.__get__(self.pub)
        for message in published:
            publish(message)
        # What the batch left alive (resting orders, trades) holds no reference cycles:
        # move it out of the cyclic collector's reach (O(1)). Without this, the young
        # generation filled with the book and each collection paused the loop for tens of
        # ms. A cycle made and dropped within one batch is still collected;
        # tests/matcher/test_service.py checks that serving leaves no cyclic garbage.
        gc_freeze()
        if self.snapshot_child is not None:
            self.reap_snapshot()
        if (
            self.snapshot_child is None
            and not self.journal_down
            and self.engine.seq - self.last_snapshot_seq >= self.snapshot_every
        ):
            self.start_snapshot()

    def handle(self, frame: bytes, ts: int, published: list[bytes]) -> bytes:
        """One request -> its reply bytes. Never raises for bad input."""
        try:
            message = codec.decode_request(frame)
        except ValueError as exc:
            return self._bad(getattr(exc, "req_id", None), str(exc))
        req_id = message.get("req_id")
        if not isinstance(req_id, (int, str)) or isinstance(req_id, bool):
            req_id = None
        op = message.get("op")
        try:
            symbol = message.get("symbol")
            if symbol is not None and symbol != self.symbol:
                raise CommandError(
                    Code.UNKNOWN_SYMBOL, f"this matcher serves {self.symbol}, not {shown(symbol)}"
                )
            if not isinstance(op, str):  # a list or map op is unhashable: no dict lookup
                raise CommandError(Code.UNKNOWN_OP, f"op must be a string, not {type(op).__name__}")
            parse = self._parsers.get(op)
            if parse is not None:
                # A command this batch reaches after its deadline is refused, so a client
                # that stopped waiting at the deadline knows it was not executed. `ts` is
                # the batch's one clock read, which the command would be stamped with.
                deadline = message.get("deadline")
                if deadline is not None and (deadline.__class__ is not int or deadline < ts):
                    raise deadline_refusal(deadline, ts)
                command = parse(message, self.engine.seq + 1, ts)
                return self.packed.reply(req_id, self._mutate(command, published))
            query = self._queries.get(op)
            if query is None:
                raise CommandError(Code.UNKNOWN_OP, f"unknown op {shown(op)}")
            reply = codec.encode_reply(req_id, query(message))
            self._answered[op] += 1
            return reply
        except NothingToCancel:
            self.metrics.cancelled_all(0)
            return codec.encode_reply(req_id, self.views.cancelled([]))
        except CommandError as exc:
            self.metrics.refuse(op, exc.code)
            return codec.encode_error(req_id, exc.code, exc.message)
        except Exception as exc:  # a bug must not kill the matcher: answer and log it
            self.internal_errors += 1
            self.metrics.refuse(op, Code.INTERNAL)
            if self.internal_errors <= 100 or not self.internal_errors % 10_000:
                log.exception("internal error #%d on op %s", self.internal_errors, shown(op))
            return codec.encode_error(
                req_id, Code.INTERNAL, f"internal error: {type(exc).__name__}"
            )

    def _recv_keyed(self) -> bytes:
        """A request frame under CURVE, as `Keyed` bytes naming the key that sent it (its
        User-Id: a frame's properties need a copy=False receive)."""
        assert self.router is not None and self.curve is not None
        frame = self.router.recv(copy=False)
        keyed = Keyed(frame.bytes)
        keyed.peer = self.curve.peers.get(str(frame.get("User-Id")))
        return keyed

    def handle_keyed(self, frame: bytes, ts: int, published: list[bytes]) -> bytes:
        """`handle` under CURVE: a trusted role's request as it is; an account key's
        request only as its own account (an account it does not name is filled in)."""
        peer: Peer | None = getattr(frame, "peer", None)
        if peer is not None and peer.trusted:
            return self.handle(frame, ts, published)
        try:
            message = codec.decode_request(frame)
        except ValueError:
            return self.handle(frame, ts, published)  # its own clear refusal
        req_id = message.get("req_id")
        if not isinstance(req_id, (int, str)) or isinstance(req_id, bool):
            req_id = None
        if peer is None:
            return codec.encode_error(req_id, Code.UNAUTHORIZED, "this CURVE key is not listed")
        named = message.get("account")
        if named is None:
            if message.get("op") in ACCOUNT_OPS:
                message["account"] = peer.account
                frame = codec.encode_request(message)
        elif named != peer.account:
            return codec.encode_error(
                req_id,
                Code.UNAUTHORIZED,
                (f"this CURVE key acts only as account {peer.account!r}, not {shown(named)}"),
            )
        return self.handle(frame, ts, published)

    def _rebuild_after_fault(self) -> None:
        """An unexpected error inside the engine may have left it half-changed: rebuild it
        from the durable journal (the failed command was never journaled), so the book
        that serves the next request is exactly the replayed one.

        If the rebuild fails too, the engine in memory cannot be trusted: the process
        stops (SystemExit passes `handle`'s catch-all) with no shutdown snapshot, and a
        restart recovers from the journal."""
        if not self.journal_down:
            try:
                self.journal.commit()
            except OSError as exc:
                self._journal_write_failed(exc)  # rolls back and rebuilds the engine too
                return
        try:
            self.engine, _ = recover(self.units, self.data_dir, self.journal)
        except Exception:
            self.engine_suspect = True
            log.critical(
                "%s cannot rebuild the state after an internal error: stopping",
                self.symbol,
                exc_info=True,
            )
            raise SystemExit(3) from None
        log.error(
            "%s state rebuilt from the journal at seq %d after an internal error",
            self.symbol,
            self.engine.seq,
        )

    # -- a journal that cannot be written (disk full) ---------------------------------

    def _journal_write_failed(self, exc: OSError) -> None:
        """A commit (or an append under fsync=always) failed: cut the journal back to its
        last commit, rebuild the engine from disk (the state every acknowledged reply
        described) and refuse mutating ops until a probe write succeeds.

        If the cut or the rebuild fails, the state on disk or in memory is unknown: stop
        with exit 3 and no shutdown snapshot; a restart recovers from the journal."""
        self.journal_down = True
        self.journal_error = f"{exc.strerror or exc} ({type(exc).__name__})"
        self.metrics.journal_failures += 1
        self._parsers = self._refusing
        self.failed_probes = 0
        try:
            self.journal.rollback()
            self.engine, _ = recover(self.units, self.data_dir, self.journal)
        except Exception:
            self.journal_failed = self.engine_suspect = True
            log.critical(
                "%s cannot roll back after a failed journal write: stopping",
                self.symbol,
                exc_info=True,
            )
            raise SystemExit(3) from None
        self.journaled_seq = self.engine.seq
        log.error(
            "%s journal write failed: %s; rolled back to seq %d; refusing orders with "
            "journal_unavailable and serving reads until the disk takes writes again",
            self.symbol,
            self.journal_error,
            self.engine.seq,
        )

    def _probe_journal(self) -> None:
        """Once a heartbeat while the journal is down: one small real write (bounded)."""
        try:
            self.journal.probe()
        except OSError as exc:
            self.failed_probes += 1
            if not self.failed_probes % PROBE_LOG_EVERY:
                log.warning(
                    "%s journal still cannot be written: %s", self.symbol, exc.strerror or exc
                )
            return
        self.journal_down = False
        self._parsers = self._accepting
        log.warning(
            "%s journal writable again: accepting orders from seq %d",
            self.symbol,
            self.engine.seq + 1,
        )

    def _refuse_mutation(self, message: dict[str, Any], seq: int, ts: int) -> tuple:
        raise self._unavailable()

    def _unavailable(self) -> CommandError:
        return CommandError(
            Code.JOURNAL_UNAVAILABLE,
            f"the journal cannot be written ({self.journal_error}): orders, "
            f"cancels and amends are refused until it can; reads still work",
        )

    def _refused_replies(
        self, replies: list[tuple[bytes, bytes | None, bytes]]
    ) -> list[tuple[bytes, bytes | None, bytes]]:
        """Every reply of a rolled-back batch, as a journal_unavailable error with its
        req_id. Only on that failure path: it decodes each reply again."""
        message = (
            f"the journal cannot be written ({self.journal_error}): this request was not applied"
        )
        refused = []
        for identity, delimiter, reply in replies:
            try:
                req_id = codec.decode_reply(reply).get("req_id")
            except Exception:
                req_id = None
            refused.append(
                (identity, delimiter, codec.encode_error(req_id, Code.JOURNAL_UNAVAILABLE, message))
            )
        return refused

    def _bad(self, req_id: Any, message: str) -> bytes:
        self.bad_requests += 1
        if self.bad_requests <= 100 or not self.bad_requests % 10_000:
            log.warning("bad request #%d: %s", self.bad_requests, message)
        return codec.encode_error(req_id, Code.INVALID_REQUEST, message)

    def _mutate(self, command: tuple, published: list[bytes]) -> bytes:
        """Apply, journal and publish one stamped command; returns the packed order."""
        engine = self.engine
        seq = command[1]
        try:
            events = engine.apply(command)  # CommandError: nothing changed, nothing journaled
        except CommandError:
            raise
        except Exception:
            self._rebuild_after_fault()  # a core bug may have left a half-changed book
            raise
        try:
            self.journal.append(seq, codec.encode_command(command))
        except OSError as exc:  # fsync=always writes here: the disk is full
            self._journal_write_failed(exc)
            raise self._unavailable() from None
        self.journaled_seq = seq
        packed = self.packed
        changes: dict[tuple[int, int], int] = {}
        for event in events:
            kind = event[0]
            if kind == EV_LEVEL:
                changes[(event[1], event[2])] = event[3]
            elif kind == EV_TRADE:
                published.append(self.trade_prefix + packed.trade(event))
        if changes:
            published.append(
                self.book_prefix
                + packed.book_update(engine.book_seq, changes, engine.bbo(), command[2])
            )
        kind = command[0]
        if kind == CMD_NEW_ORDER or kind == CMD_NEW_STOP:
            order = engine.get_order(seq)
        elif kind == CMD_CANCEL_ALL:
            # The orders its parser found, now cancelled (the objects themselves: a
            # cancel_all of more orders than the finished window keeps still has them).
            targets, self._cancel_all_targets = self._cancel_all_targets, []
            self.metrics.cancelled_all(len(targets))  # each an order outcome
            return packed.cancelled(targets)
        else:
            order = engine.get_order(command[4])
        assert order is not None
        self._applied[command[0], order.status, order.reason] += 1  # the order's outcome
        return packed.order(order)

    # -- the parsers that need the engine --------------------------------------------

    def _cancel_command(self, message: dict[str, Any], seq: int, ts: int) -> tuple:
        """cancel_order, by order id or by client_order_id (resolved to the order id:
        the journaled command is the same either way)."""
        command = self.validator.cancel(message, seq, ts)
        return command if command[4].__class__ is int else self.engine.resolve(command)

    def _amend_command(self, message: dict[str, Any], seq: int, ts: int) -> tuple:
        command = self.validator.amend(message, seq, ts)
        return command if command[4].__class__ is int else self.engine.resolve(command)

    def _cancel_all_command(self, message: dict[str, Any], seq: int, ts: int) -> tuple:
        """cancel_all; raises NothingToCancel when the account has nothing open there."""
        command = self.validator.cancel_all(message, seq, ts)
        self._cancel_all_targets = self.engine.cancellable(command[3], command[4])
        if not self._cancel_all_targets:
            raise NothingToCancel
        return command

    def _heartbeat(self) -> None:
        assert self.pub is not None
        self.pub.send(
            codec.encode_pub(
                self.topic_heartbeat,
                {
                    "symbol": self.symbol,
                    "epoch": self.epoch,
                    "book_seq": self.engine.book_seq,
                    "last_trade_id": self.engine.trade_id,
                    "timestamp": self.views.timestamp(time.time_ns() // 1000),
                },
            )
        )

    # -- queries -------------------------------------------------------------------

    def _ping(self, message: dict[str, Any]) -> dict[str, Any]:
        result = {
            "symbol": self.symbol,
            "seq": self.engine.seq,
            "book_seq": self.engine.book_seq,
            "epoch": self.epoch,
        }
        if message.get("hash") is True:  # O(state): only on request (tests, operators)
            result["state_hash"] = self.engine.state_hash()
        return result

    def _get_order(self, message: dict[str, Any]) -> dict[str, Any]:
        """By order_id or by client_order_id (exactly one): the caller's own orders only."""
        reference = order_reference(message)
        account = account_of(message)
        if isinstance(reference, str):
            order = self.engine.client_order(account, reference)
            named = f"with client_order_id {shown(reference)}"
        else:
            order = self.engine.get_order(reference)
            named = str(reference)
        if order is None or order.account != account:
            raise CommandError(Code.UNKNOWN_ORDER, f"no order {named} for this account")
        return self.views.order(order)

    def _orders(self, message: dict[str, Any]) -> dict[str, Any]:
        account = account_of(message)
        status = message.get("status")
        if status not in (None, "open", "all"):
            raise CommandError(Code.INVALID_FIELD, "status must be open or all")
        limit = bounded_int(message, "limit", 1000)
        if status == "open":
            orders = self.engine.open_orders(account)[:limit]
        else:
            orders = self.engine.recent_orders(account, limit)
        return {"symbol": self.symbol, "orders": [self.views.order(o) for o in orders]}

    def _book(self, message: dict[str, Any]) -> dict[str, Any]:
        depth = bounded_int(message, "depth", 10)
        book = self.engine.book
        return {
            "symbol": self.symbol,
            "book_seq": self.engine.book_seq,
            "timestamp": self.views.timestamp(time.time_ns() // 1000),
            "bids": self.views.levels(book.depth(0, depth)),
            "asks": self.views.levels(book.depth(1, depth)),
        }

    def _bbo(self, message: dict[str, Any]) -> dict[str, Any]:
        return self.views.bbo(self.engine.bbo(), self.engine.book_seq)

    def _trades(self, message: dict[str, Any]) -> dict[str, Any]:
        """The newest trades, newest first; with `from_trade_id` N, the kept trades from
        id N on, oldest first (a WebSocket resume: docs/protocol.md)."""
        first = trade_id_of(message, "from_trade_id")
        if first is not None:
            return self._trades_from(first, bounded_int(message, "limit", 1000))
        limit = bounded_int(message, "limit", 50)
        recent = self.engine.recent_trades
        newest = [recent[-i] for i in range(1, min(limit, len(recent)) + 1)]
        return {"symbol": self.symbol, "trades": [self.views.trade(t) for t in newest]}

    def _trades_from(self, first: int, limit: int) -> dict[str, Any]:
        recent = self.engine.recent_trades
        last = self.engine.trade_id
        oldest = recent[0][1] if recent else last + 1
        if first < oldest:
            raise CommandError(
                Code.INVALID_FIELD,
                f"from_trade_id {first} is older than the kept trades ({oldest} to {last})",
            )
        # Ids are contiguous: trade N is at index N - oldest. O(limit).
        start = first - oldest
        kept = [recent[i] for i in range(start, min(start + limit, len(recent)))]
        return {"symbol": self.symbol, "trades": [self.views.trade(t) for t in kept]}

    def _candles(self, message: dict[str, Any]) -> dict[str, Any]:
        interval = interval_of(message)
        limit = bounded_int(message, "limit", 500)
        start, end = time_of(message, "start"), time_of(message, "end")
        # start after end is an empty window, not an error (no schema can state the order).
        candles = self.engine.candles.series(interval, limit, start, end)
        return {
            "symbol": self.symbol,
            "interval": interval,
            "candles": [self.views.candle(c) for c in candles],
        }

    def _ticker(self, message: dict[str, Any]) -> dict[str, Any]:
        now = max(time.time_ns() // 1000, self.last_ts)
        engine = self.engine
        return self.views.ticker(engine.candles.day(now), engine.last_price, engine.bbo(), now)

    def _snapshot(self, message: dict[str, Any]) -> dict[str, Any]:
        book = self.engine.book
        everything = len(book.orders) + 1
        return {
            "symbol": self.symbol,
            "epoch": self.epoch,
            "book_seq": self.engine.book_seq,
            "last_trade_id": self.engine.trade_id,
            "bids": self.views.levels(book.depth(0, everything)),
            "asks": self.views.levels(book.depth(1, everything)),
            "bbo": self.views.bbo(self.engine.bbo(), self.engine.book_seq),
        }


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run.py matcher", description="one symbol's matcher")
    parser.add_argument("--symbol", required=True)
    parser.add_argument("--config", help="TOML config (default: embedded)")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--host")
    parser.add_argument("--zmq-port", type=int)
    parser.add_argument("--fsync", choices=("always", "batch", "off"))
    parser.add_argument("--snapshot-every", type=int)
    parser.add_argument("--router", help="ROUTER endpoint to bind (default from config)")
    parser.add_argument("--pub", help="PUB endpoint to bind (default from config)")
    parser.add_argument(
        "--prune-segments",
        action="store_true",
        default=None,
        help="delete journal segments older than the kept snapshots",
    )
    parser.add_argument(
        "--segment-bytes", type=int, help=f"journal segment size ({SEGMENT_BYTES >> 20} MiB)"
    )
    parser.add_argument(
        "--apply-rules",
        action="store_true",
        help="journal configured rules that differ from the journaled ones",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus /metrics on this port (0: off; default: the "
        "config's metrics_port + the symbol's index, or off)",
    )
    args = parser.parse_args(argv)
    configure_logging()
    flags = "host zmq_port data_dir fsync snapshot_every prune_segments segment_bytes"
    config = load_for("matcher", args, flags.split(), symbols=[args.symbol])
    if config is None:
        return 2
    symbol = config.symbols[args.symbol]
    # Before anything is bound or opened: beyond loopback only with CurveZMQ.
    endpoints = [args.router or symbol.order_endpoint, args.pub or symbol.feed_endpoint]
    refusal = exposure(f"{args.symbol} matcher", endpoints, config.curve is not None)
    try:
        curve = server_curve(config.curve) if config.curve is not None else None
    except ValueError as exc:
        refusal = f"{args.symbol} matcher: {exc}"
    if refusal:
        log.error("%s", refusal)
        return 2
    metrics_port = config.symbols[args.symbol].metrics_port
    if args.metrics_port is not None:
        if not 0 <= args.metrics_port <= 65535:
            print(
                f"matcher: --metrics-port must be a port in 0..65535, not {args.metrics_port}",
                file=sys.stderr,
                flush=True,
            )
            return 2
        metrics_port = args.metrics_port
    service = MatcherService(
        symbol,
        config.data_dir,
        config.fsync,
        config.snapshot_every,
        router_endpoint=args.router,
        pub_endpoint=args.pub,
        prune_segments=config.prune_segments,
        segment_bytes=config.segment_bytes,
        apply_rules=args.apply_rules,
        curve=curve,
        metrics_address=(config.host, metrics_port) if metrics_port else None,
    )
    service.install_signal_handlers()
    try:
        service.start()
    except (FolderLocked, JournalCorrupt, RecoveryError, zmq.ZMQError, OSError) as exc:
        # Refuse to start with one clear line (file and offset, or the endpoint): serving
        # from a damaged journal or the wrong address must never happen silently.
        endpoint = (
            f" ({service.router_endpoint}, {service.pub_endpoint})"
            if isinstance(exc, zmq.ZMQError)
            else ""
        )
        log.error("%s cannot start%s: %s", args.symbol, endpoint, exc)
        return 2
    try:
        service.run()
    finally:
        service.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
