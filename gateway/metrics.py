"""Prometheus metrics of one gateway app (GET /metrics, text exposition format).

- `matchwire_gateway_requests_total{endpoint, status}`: answered requests;
- `matchwire_gateway_request_seconds{endpoint}`: latency histogram, from the handler's
  start to its response (body read, validation, matcher round trip, encoding);
- `matchwire_gateway_matcher_up{symbol}`: 1 when the last exchange with the symbol's
  matcher got an answer (refreshed by every request, /health and /metrics itself).

Each app has its own registry, so several apps can live in one process (tests).
Labelled children are cached: `labels()` takes a lock and builds a tuple per call,
too much for a path that runs tens of thousands of times a second.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self, up: dict[str, bool]) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "matchwire_gateway_requests", "REST requests answered, by endpoint and status",
            ("endpoint", "status"), registry=self.registry,
        )
        self._latency = Histogram(
            "matchwire_gateway_request_seconds", "REST request latency, by endpoint",
            ("endpoint",), buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        matcher_up = Gauge(
            "matchwire_gateway_matcher_up", "1 when the symbol's matcher answers",
            ("symbol",), registry=self.registry,
        )
        for symbol in up:
            matcher_up.labels(symbol).set_function(_reader(up, symbol))
        self._counters: dict[tuple[str, int], Callable[[], None]] = {}
        self._observers: dict[str, Callable[[float], None]] = {}

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency. Cost: two dict lookups, two locks."""
        counter = self._counters.get((endpoint, status))
        if counter is None:
            counter = self._requests.labels(endpoint, str(status)).inc
            self._counters[(endpoint, status)] = counter
        counter()
        observer = self._observers.get(endpoint)
        if observer is None:
            observer = self._latency.labels(endpoint).observe
            self._observers[endpoint] = observer
        observer(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _reader(up: dict[str, bool], symbol: str) -> Callable[[], float]:
    return lambda: 1.0 if up.get(symbol) else 0.0
