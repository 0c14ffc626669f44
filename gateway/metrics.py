"""Prometheus metrics of one gateway app (GET /metrics, text exposition format).

- `matchwire_gateway_requests_total{endpoint, status}`: answered requests;
- `matchwire_gateway_request_seconds{endpoint}`: latency histogram, from the handler's
  start to its response (body read, validation, matcher round trip, encoding);
- `matchwire_gateway_matcher_up{symbol}`: 1 when the last exchange with the symbol's
  matcher got an answer (refreshed by every request, /health and /metrics itself);
- `process_*`: this process's CPU, memory, descriptors and start time.

Each app has its own registry, so several apps can live in one process (tests).
Requests are counted in plain dicts and lists, read by a collector when /metrics is
scraped: prometheus_client's Counter.inc and Histogram.observe take a lock per call and
walk the buckets in Python (3.4 µs per request here, against 0.6), and only the event
loop's thread ever counts or scrapes. The exposition is the same as theirs.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from matcher.metrics import steps

LATENCY_BUCKETS = steps("0.0001", "5")
BUCKET_LABELS = [floatToGoString(bound) for bound in LATENCY_BUCKETS] + ["+Inf"]
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self, up: dict[str, bool]) -> None:
        self.registry = CollectorRegistry()
        # (endpoint, status) -> [count, created]
        self.requests: dict[tuple[str, int], list[float]] = {}
        # endpoint -> [count per bucket (the last one: above them all)..., sum, created]
        self.latency: dict[str, list[float]] = {}
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)
        matcher_up = Gauge(
            "matchwire_gateway_matcher_up",
            "1 when the symbol's matcher answers",
            ("symbol",),
            registry=self.registry,
        )
        for symbol in up:
            matcher_up.labels(symbol).set_function(_reader(up, symbol))

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency. Cost: two dict lookups, a bisect."""
        counter = self.requests.get((endpoint, status))
        if counter is None:
            counter = self.requests[(endpoint, status)] = [0, time.time()]
        counter[0] += 1
        histogram = self.latency.get(endpoint)
        if histogram is None:
            histogram = self.latency[endpoint] = [0] * (len(LATENCY_BUCKETS) + 2) + [time.time()]
        histogram[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # the first bound >= seconds
        histogram[-2] += seconds

    def render(self) -> bytes:
        return generate_latest(self.registry)


def matcher_metrics_endpoint(host: str, port: int) -> str | None:
    """The URL a matcher serves its own /metrics on (GET /), or None when it is off."""
    if not port:
        return None
    return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"


class _Collector(Collector):
    """The counts of `Metrics` as prometheus_client's Counter and Histogram show them."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "matchwire_gateway_requests",
            "REST requests answered, by endpoint and status",
            labels=("endpoint", "status"),
        )
        for (endpoint, status), (count, created) in self.metrics.requests.items():
            requests.add_metric((endpoint, str(status)), count, created=created)
        yield requests
        latency = HistogramMetricFamily(
            "matchwire_gateway_request_seconds",
            "REST request latency, by endpoint",
            labels=("endpoint",),
        )
        for endpoint, histogram in self.metrics.latency.items():
            counts = histogram[:-2]
            cumulative = [sum(counts[: index + 1]) for index in range(len(counts))]
            latency.add_metric(
                (endpoint,), list(zip(BUCKET_LABELS, cumulative, strict=True)), histogram[-2]
            )
            latency.add_sample(
                "matchwire_gateway_request_seconds_created", {"endpoint": endpoint}, histogram[-1]
            )
        yield latency


def _reader(up: dict[str, bool], symbol: str) -> Callable[[], float]:
    return lambda: 1.0 if up.get(symbol) else 0.0
