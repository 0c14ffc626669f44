"""A matcher's own Prometheus endpoint (docs/operations.md, "Metrics"): a real matcher
process, real HTTP scrapes, parsed with prometheus_client's text parser."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from matcher.metrics import steps
from matcher.protocol import Code
from tests.matcher.test_service import MatcherProcess, limit, spawner
from tests.support import Child, free_port, wait_until

SYMBOL = "BTC-USDT"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample of http://127.0.0.1:port/metrics: (name, sorted labels) -> value."""
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert answer.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted({"symbol": SYMBOL, **labels}.items())))
    assert key in samples, f"no sample {key}"
    return samples[key]


def orders(samples: Samples, outcome: str, reason: str = "") -> float:
    return value(samples, "matchwire_orders_total", outcome=outcome, reason=reason)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., MatcherProcess]]:
    yield from spawner(tmp_path)


def with_metrics(
    spawn: Callable[..., MatcherProcess], tmp_path: Path
) -> tuple[MatcherProcess, int]:
    port = free_port()
    process = spawn(tmp_path / "data", fsync="batch", extra=["--metrics-port", str(port)])
    return process.start(), port


def test_counters_exist_at_zero_before_any_order(spawn: Any, tmp_path: Path) -> None:
    matcher, port = with_metrics(spawn, tmp_path)
    samples = scrape(port)
    for outcome, reason in (
        ("filled", ""),
        ("partially_filled", ""),
        ("resting", ""),
        ("pending", ""),
        ("cancelled", Code.USER_CANCELLED),
        ("cancelled", Code.IOC_REMAINDER),
        ("rejected", Code.POST_ONLY_WOULD_TAKE),
        ("refused", Code.INVALID_PRICE),
        ("refused", Code.DEADLINE_EXCEEDED),
        ("refused", Code.JOURNAL_UNAVAILABLE),
    ):
        assert orders(samples, outcome, reason) == 0
    for op in ("new_order", "new_stop_order", "cancel_order", "amend_order"):
        assert value(samples, "matchwire_commands_total", op=op, result="ok") == 0
        assert value(samples, "matchwire_commands_total", op=op, result="deadline_exceeded") == 0
    assert value(samples, "matchwire_deadline_refusals_total") == 0
    assert value(samples, "matchwire_journal_unavailable") == 0
    assert value(samples, "matchwire_journal_failures_total") == 0
    assert value(samples, "matchwire_resting_orders") == 0
    assert value(samples, "matchwire_pending_stops") == 0
    assert value(samples, "matchwire_journal_fsync_seconds_count") == 0
    assert value(samples, "matchwire_snapshots_total", result="ok") == 0
    builds = [labels for name, labels in samples if name == "matchwire_matcher_build"]
    assert len(builds) == 1 and dict(builds[0])["build"] in ("compiled", "pure")
    # process_* from prometheus_client's ProcessCollector, for this very process
    names = {name for name, _ in samples}
    assert {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    } <= names
    matcher.stop()


def test_orders_by_outcome_commands_and_journal_after_a_known_sequence(
    spawn: Any, tmp_path: Path
) -> None:
    matcher, port = with_metrics(spawn, tmp_path)
    resting = matcher.request("new_order", **limit("sell", "30000", "1"))
    assert resting["status"] == "new"
    filled = matcher.request("new_order", **limit("buy", "30000", "0.4"))
    assert filled["status"] == "filled"
    cancelled = matcher.request("new_order", **limit("sell", "31000", "1"))
    matcher.request("cancel_order", order_id=cancelled["order_id"])
    post_only = matcher.request("new_order", **limit("buy", "30000", "0.1", post_only=True))
    assert post_only["status"] == "rejected"
    refused = matcher.raw("new_order", **limit("buy", "29999.999", "0.1"))
    assert refused["error"]["code"] == Code.INVALID_PRICE
    stop = matcher.request(
        "new_stop_order", order_type="stop_loss", side="sell", stop_price="29000", quantity="0.1"
    )
    assert stop["status"] == "pending"
    late = matcher.raw("new_order", deadline=1, **limit("buy", "100", "1"))
    assert late["error"]["code"] == Code.DEADLINE_EXCEEDED
    matcher.request("book", depth=5)

    samples = scrape(port)
    assert orders(samples, "resting") == 2
    assert orders(samples, "filled") == 1
    assert orders(samples, "cancelled", Code.USER_CANCELLED) == 1
    assert orders(samples, "rejected", Code.POST_ONLY_WOULD_TAKE) == 1
    assert orders(samples, "refused", Code.INVALID_PRICE) == 1
    assert orders(samples, "refused", Code.DEADLINE_EXCEEDED) == 1
    assert orders(samples, "pending") == 1
    assert orders(samples, "partially_filled") == 0
    commands = "matchwire_commands_total"
    assert value(samples, commands, op="new_order", result="ok") == 4
    assert value(samples, commands, op="new_order", result=Code.INVALID_PRICE) == 1
    assert value(samples, commands, op="new_order", result=Code.DEADLINE_EXCEEDED) == 1
    assert value(samples, commands, op="new_stop_order", result="ok") == 1
    assert value(samples, commands, op="cancel_order", result="ok") == 1
    assert value(samples, commands, op="book", result="ok") == 1
    assert value(samples, "matchwire_deadline_refusals_total") == 1
    assert value(samples, "matchwire_resting_orders") == 1  # the rest of the first sell
    assert value(samples, "matchwire_pending_stops") == 1
    # Six commands changed state, each in a batch of its own: six group commits, fsynced.
    assert value(samples, "matchwire_journal_fsync_seconds_count") == 6
    assert value(samples, "matchwire_journal_fsync_seconds_sum") > 0
    assert value(samples, "matchwire_journal_fsync_seconds_bucket", le="+Inf") == 6
    assert value(samples, "matchwire_journal_records_total") == 7  # with the rules
    assert value(samples, "matchwire_journal_bytes_total") > 0
    assert value(samples, "matchwire_batch_size_count") >= 9
    assert value(samples, "matchwire_seq") == 7  # the rules record, then six commands
    assert value(samples, "matchwire_bad_requests_total") == 0
    matcher.stop()


def test_a_taken_metrics_port_refuses_to_start_naming_it(tmp_path: Path) -> None:
    taken = free_port()
    holder = Child(
        ["-m", "http.server", "--bind", "127.0.0.1", str(taken)], tmp_path / "holder.log"
    ).start()
    try:
        wait_until(lambda: _answers(taken), timeout=30)
        process = MatcherProcess(
            tmp_path / "data", tmp_path / "matcher.log", extra=["--metrics-port", str(taken)]
        )
        process.start(wait=False)
        assert process.child is not None and process.child.process is not None
        assert process.child.process.wait(timeout=60) == 2
        assert f"cannot serve metrics on 127.0.0.1:{taken}" in process.log()
    finally:
        holder.stop()


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    except httpx.HTTPError:
        return False
    return True


def test_a_full_disk_shows_as_journal_unavailable(spawn: Any, tmp_path: Path) -> None:
    """A journal write refused by the disk (EFBIG past RLIMIT_FSIZE): the gauge is 1, the
    failure is counted, and the orders refused meanwhile are counted by their code."""
    port = free_port()
    matcher = spawn(
        tmp_path / "data", fsync="batch", max_file_bytes=20_000, extra=["--metrics-port", str(port)]
    ).start()
    for i in range(5_000):
        reply = matcher.raw("new_order", **limit("buy", str(20_000 + i % 100), "0.01"))
        if not reply["ok"]:
            break
    assert reply["error"]["code"] == Code.JOURNAL_UNAVAILABLE, reply
    refused = matcher.raw("new_order", **limit("buy", "100", "1"))
    assert refused["error"]["code"] == Code.JOURNAL_UNAVAILABLE
    samples = scrape(port)
    assert value(samples, "matchwire_journal_unavailable") == 1
    assert value(samples, "matchwire_journal_failures_total") == 1
    assert orders(samples, "refused", Code.JOURNAL_UNAVAILABLE) == 1  # the one after it
    assert (
        value(samples, "matchwire_commands_total", op="new_order", result=Code.JOURNAL_UNAVAILABLE)
        == 1
    )
    matcher.stop()


def test_background_snapshots_are_timed_and_counted(spawn: Any, tmp_path: Path) -> None:
    port = free_port()
    matcher = spawn(
        tmp_path / "data", snapshot_every=3, extra=["--metrics-port", str(port)]
    ).start()
    for price in ("100", "101", "102", "103"):
        matcher.request("new_order", **limit("buy", price, "1"))

    def snapshotted() -> Samples | None:
        samples = scrape(port)
        return samples if value(samples, "matchwire_snapshots_total", result="ok") else None

    samples = wait_until(snapshotted, timeout=60)
    assert value(samples, "matchwire_snapshots_total", result="failed") == 0
    assert value(samples, "matchwire_snapshot_seconds_count") >= 1
    assert value(samples, "matchwire_last_snapshot_seq") >= 3
    matcher.stop()


def test_bucket_steps_are_the_exact_decimals() -> None:
    # The bounds are the labels Prometheus shows: 0.00025, not 0.00025000000000000006.
    assert steps("0.0001", "0.005") == (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005)
    assert steps("0.5", "5") == (0.5, 1.0, 2.5, 5.0)
