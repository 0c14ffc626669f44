"""Prometheus metrics of one matcher process (docs/operations.md, "Metrics").

The loop counts in plain dicts and lists that this module's collector turns into
metric families when /metrics is scraped; nothing here runs per request except one
dict increment per command (measured in docs/operations.md). prometheus_client's
Counter.inc and Histogram.observe take a lock and walk the buckets per call, and
`labels()` is a dict lookup under a lock: none of that is on the hot path.

Orders are counted here, not in the gateway: raw ZeroMQ clients bypass the gateway,
and only the matcher knows every order's immediate outcome.

Threads: prometheus_client's HTTP server scrapes from its own thread. It only reads:
ints and dicts the loop writes (a dict is copied before it is iterated, which is atomic
under the GIL), so a scrape never blocks the loop for longer than one copy.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from matcher.protocol import (
    CANCELLED,
    CMD_AMEND,
    CMD_CANCEL,
    CMD_CANCEL_ALL,
    CMD_NEW_ORDER,
    CMD_NEW_STOP,
    FILLED,
    NEW,
    PARTIALLY_FILLED,
    PENDING,
    REJECTED,
    Code,
)

if TYPE_CHECKING:
    from matcher.service import MatcherService


def steps(lowest: str, highest: str) -> tuple[float, ...]:
    """Histogram bounds 1, 2.5, 5 times the powers of ten, from `lowest` to `highest`
    (decimal texts: each bound is the float of its exact decimal, 0.00025 not
    0.00025000000000000006). The matcher's and the gateway's latency buckets."""
    low, high = Decimal(lowest), Decimal(highest)
    bounds: list[float] = []
    power = Decimal(1).scaleb(low.adjusted())
    while power <= high:
        bounds += [
            float(step * power) for step in (1, Decimal("2.5"), 5) if low <= step * power <= high
        ]
        power *= 10
    return tuple(bounds)


SECONDS_BUCKETS = steps("0.00001", "2.5")
SNAPSHOT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

COMMAND_OPS = {
    CMD_NEW_ORDER: "new_order",
    CMD_NEW_STOP: "new_stop_order",
    CMD_CANCEL: "cancel_order",
    CMD_AMEND: "amend_order",
    CMD_CANCEL_ALL: "cancel_all",
}
QUERY_OPS = ("ping", "get_order", "orders", "book", "bbo", "trades", "snapshot")
OTHER_OP = "other"  # an unknown op, or one that is not a string: labels stay bounded
KNOWN_OPS = frozenset((*COMMAND_OPS.values(), *QUERY_OPS))
ORDER_OPS = frozenset(("new_order", "new_stop_order"))  # their refusals are order outcomes
# The immediate outcome of an accepted order, by its status after the command.
OUTCOMES = {
    FILLED: "filled",
    PARTIALLY_FILLED: "partially_filled",
    NEW: "resting",
    PENDING: "pending",
    CANCELLED: "cancelled",
    REJECTED: "rejected",
}
# Label values exported at 0 from the start, so rate() works before the first event.
CANCEL_REASONS = (
    Code.USER_CANCELLED,
    Code.IOC_REMAINDER,
    Code.MARKET_REMAINDER,
    Code.FOK_NOT_FILLABLE,
    Code.SELF_TRADE_PREVENTED,
)
REJECT_REASONS = (Code.POST_ONLY_WOULD_TAKE,)
ORDER_REFUSALS = (
    Code.INVALID_FIELD,
    Code.INVALID_PRICE,
    Code.INVALID_QUANTITY,
    Code.DUPLICATE_CLIENT_ORDER_ID,
    Code.WOULD_TRIGGER_IMMEDIATELY,
    Code.DEADLINE_EXCEEDED,
    Code.JOURNAL_UNAVAILABLE,
    Code.INTERNAL,
)
COMMAND_REFUSALS = (Code.DEADLINE_EXCEEDED, Code.JOURNAL_UNAVAILABLE)


def build_name() -> str:
    """ "compiled" or "pure": the matching core's build, as its loader names it."""
    try:
        from matcher import _build  # type: ignore[attr-defined]
    except ImportError:  # no loader: only the pure-Python core exists
        return "pure"
    return str(_build.build_name())


class Histogram:
    """Bucket counts and a sum, observed by the loop, read by the collector."""

    __slots__ = ("bounds", "labels", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.labels = [floatToGoString(bound) for bound in self.bounds] + ["+Inf"]
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bound >= value
        self.total += value

    def family(self, name: str, documentation: str, symbol: str) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, documentation, labels=("symbol",))
        counts, running, buckets = list(self.counts), 0, []
        for label, count in zip(self.labels, counts, strict=True):
            running += count
            buckets.append((label, running))
        family.add_metric((symbol,), buckets, self.total)
        return family


class MatcherMetrics:
    """What one matcher counts; `service` is read for its gauges at scrape time."""

    def __init__(self, service: MatcherService) -> None:
        self.service = service
        self.symbol = service.symbol
        self.build = build_name()
        # (command type, status after it, reason) -> commands applied
        self.applied: defaultdict[tuple[int, int, str | None], int] = defaultdict(int)
        for status in (FILLED, PARTIALLY_FILLED, NEW):
            self.applied[CMD_NEW_ORDER, status, None] = 0
        for reason in CANCEL_REASONS:
            if reason != Code.USER_CANCELLED:
                self.applied[CMD_NEW_ORDER, CANCELLED, reason] = 0
        for reason in REJECT_REASONS:
            self.applied[CMD_NEW_ORDER, REJECTED, reason] = 0
        self.applied[CMD_NEW_STOP, PENDING, None] = 0
        self.applied[CMD_CANCEL, CANCELLED, Code.USER_CANCELLED] = 0
        self.applied[CMD_AMEND, NEW, None] = 0
        # cancel_all: its key counts the orders it cancelled (each an order outcome, as a
        # cancel_order's is), `cancel_alls` the commands answered, a no-op one included.
        self.applied[CMD_CANCEL_ALL, CANCELLED, Code.USER_CANCELLED] = 0
        self.cancel_alls = 0
        # answered, by op; a query op added to the service later counts from its first use
        self.queries: defaultdict[str, int] = defaultdict(int, dict.fromkeys(QUERY_OPS, 0))
        # (op, code) -> requests refused with that error code
        self.refused: defaultdict[tuple[str, str], int] = defaultdict(int)
        for op in ORDER_OPS:
            for code in ORDER_REFUSALS:
                self.refused[op, code] = 0
        for op in ("cancel_order", "amend_order", "cancel_all"):
            for code in COMMAND_REFUSALS:
                self.refused[op, code] = 0
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.batch_seconds = Histogram(SECONDS_BUCKETS)
        self.commit_seconds = Histogram(SECONDS_BUCKETS)
        self.snapshot_seconds = Histogram(SNAPSHOT_BUCKETS)
        self.snapshots = {"ok": 0, "failed": 0}
        self.journal_failures = 0
        self.server: Any = None

    def cancelled_all(self, count: int) -> None:
        """One cancel_all answered, which cancelled `count` orders (0: it found none)."""
        self.cancel_alls += 1
        self.applied[CMD_CANCEL_ALL, CANCELLED, Code.USER_CANCELLED] += count

    def refuse(self, op: Any, code: str) -> None:
        """Count one error reply (not on the hot path: errors only)."""
        known = isinstance(op, str) and (
            op in KNOWN_OPS or op in self.service._queries or op in self.service._accepting
        )
        label = op if known else OTHER_OP
        self.refused[label, code] += 1

    # -- serving -------------------------------------------------------------------

    def serve(self, host: str, port: int) -> None:
        """Export this collector, process_* and python_* over HTTP from a daemon thread;
        OSError when the port is taken. A registry of its own: a second service in one
        process (tests) registers no duplicate."""
        registry = CollectorRegistry()
        registry.register(MatcherCollector(self))
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.server, _ = start_http_server(port, addr=host, registry=registry)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class MatcherCollector(Collector):
    """The counts of `MatcherMetrics` as metric families, built at each scrape."""

    def __init__(self, metrics: MatcherMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        service = m.service
        symbol = m.symbol
        applied = m.applied.copy()
        refused = m.refused.copy()
        orders = CounterMetricFamily(
            "matchwire_orders",
            "Orders by immediate outcome: accepted orders by their status after the command "
            "(reason: why cancelled or rejected), user cancels (cancel_order, and each order a "
            "cancel_all cancelled), refused orders by error code",
            labels=("symbol", "outcome", "reason"),
        )
        commands = CounterMetricFamily(
            "matchwire_commands",
            "Requests answered, by op and result (ok or the error code)",
            labels=("symbol", "op", "result"),
        )
        outcome_counts: dict[tuple[str, str], int] = defaultdict(int)
        command_counts: dict[tuple[str, str], int] = defaultdict(int)
        for (kind, status, reason), count in applied.items():
            op = COMMAND_OPS.get(kind, OTHER_OP)
            if kind != CMD_CANCEL_ALL:  # its count is of orders, not commands
                command_counts[op, "ok"] += count
            if kind != CMD_AMEND:
                outcome_counts[OUTCOMES.get(status, str(status)), reason or ""] += count
        for (op, code), count in refused.items():
            command_counts[op, code] += count
            if op in ORDER_OPS:
                outcome_counts["refused", code] += count
        command_counts["cancel_all", "ok"] += m.cancel_alls
        for op in COMMAND_OPS.values():
            command_counts[op, "ok"] += 0
        for op, count in m.queries.copy().items():
            command_counts[op, "ok"] += count
        for (outcome, reason), count in sorted(outcome_counts.items()):
            orders.add_metric((symbol, outcome, reason), count)
        for (op, result), count in sorted(command_counts.items()):
            commands.add_metric((symbol, op, result), count)
        yield orders
        yield commands
        deadline = CounterMetricFamily(
            "matchwire_deadline_refusals",
            "Mutating commands refused because they were reached after their deadline",
            labels=("symbol",),
        )
        deadline.add_metric(
            (symbol,),
            sum(count for (_, code), count in refused.items() if code == Code.DEADLINE_EXCEEDED),
        )
        yield deadline
        yield _counter(
            "matchwire_bad_requests",
            "Requests refused as invalid_request (undecodable, wrong framing)",
            symbol,
            service.bad_requests,
        )
        yield _counter(
            "matchwire_internal_errors",
            "Requests answered internal_error (a bug)",
            symbol,
            service.internal_errors,
        )
        yield m.batch_size.family("matchwire_batch_size", "Requests per loop batch", symbol)
        yield m.batch_seconds.family(
            "matchwire_batch_seconds",
            "Handling one batch: decode, validate, apply, journal append, encode",
            symbol,
        )
        yield m.commit_seconds.family(
            "matchwire_journal_fsync_seconds",
            "The group commit of a batch that changed state: one write of its records and "
            "one fsync (fsync=batch; no fsync under off, per record under always)",
            symbol,
        )
        journal = service.journal
        yield _counter(
            "matchwire_journal_bytes",
            "Bytes written to journal segments by this process",
            symbol,
            journal.bytes_written,
        )
        yield _counter(
            "matchwire_journal_records",
            "Records written to the journal by this process",
            symbol,
            journal.records_written,
        )
        yield _gauge(
            "matchwire_journal_unavailable",
            "1 while the journal cannot be written "
            "(disk full): orders, cancels and amends are refused with "
            "journal_unavailable",
            symbol,
            1 if service.journal_down else 0,
        )
        yield _counter(
            "matchwire_journal_failures",
            "Journal writes that failed and switched the matcher to refusing (journal_unavailable)",
            symbol,
            m.journal_failures,
        )
        yield _gauge(
            "matchwire_journal_failed_probes",
            "Probe writes failed since the journal became unavailable",
            symbol,
            service.failed_probes if service.journal_down else 0,
        )
        yield m.snapshot_seconds.family(
            "matchwire_snapshot_seconds",
            "Background snapshots, from the fork to the child's exit as the loop sees it",
            symbol,
        )
        snapshots = CounterMetricFamily(
            "matchwire_snapshots", "Background snapshots by result", labels=("symbol", "result")
        )
        for result, count in m.snapshots.items():
            snapshots.add_metric((symbol, result), count)
        yield snapshots
        yield _gauge(
            "matchwire_last_snapshot_seq",
            "The seq of the newest snapshot written (or recovered from)",
            symbol,
            service.last_snapshot_seq,
        )
        engine = service.engine
        yield _gauge("matchwire_seq", "The last journal seq applied", symbol, engine.seq)
        yield _gauge("matchwire_book_seq", "The book's sequence number", symbol, engine.book_seq)
        yield _gauge(
            "matchwire_resting_orders",
            "Orders resting on the book",
            symbol,
            len(engine.book.orders),
        )
        yield _gauge(
            "matchwire_pending_stops",
            "Stop orders waiting for their trigger",
            symbol,
            len(engine.stops),
        )
        info = GaugeMetricFamily(
            "matchwire_matcher_build",
            "The matching core's build: compiled (Cython) or pure (Python); always 1",
            labels=("symbol", "build"),
        )
        info.add_metric((symbol, m.build), 1)
        yield info


def _counter(name: str, documentation: str, symbol: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=("symbol",))
    family.add_metric((symbol,), value)
    return family


def _gauge(name: str, documentation: str, symbol: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=("symbol",))
    family.add_metric((symbol,), value)
    return family
