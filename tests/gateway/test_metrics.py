"""gateway/metrics.py: the exposition prometheus_client's Counter and Histogram would give."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from gateway.metrics import LATENCY_BUCKETS, Metrics

OBSERVED = [
    ("submit_order", 200, 0.0003),
    ("submit_order", 200, 0.0001),
    ("bbo", 404, 0.00005),
    ("submit_order", 400, 7.0),
    ("bbo", 200, 5.0),
    ("submit_order", 200, 0.002),
]


def without_created(text: bytes) -> list[str]:
    """The exposition's request lines, with the creation timestamps blanked."""
    return [
        line.rsplit(" ", 1)[0] if "_created{" in line else line
        for line in text.decode().splitlines()
        if "matcher_up" not in line and "process_" not in line
    ]


def test_same_exposition_as_prometheus_client_metrics() -> None:
    registry = CollectorRegistry()
    requests = Counter(
        "matchwire_gateway_requests",
        "REST requests answered, by endpoint and status",
        ("endpoint", "status"),
        registry=registry,
    )
    latency = Histogram(
        "matchwire_gateway_request_seconds",
        "REST request latency, by endpoint",
        ("endpoint",),
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    metrics = Metrics({})
    for endpoint, status, seconds in OBSERVED:
        requests.labels(endpoint, str(status)).inc()
        latency.labels(endpoint).observe(seconds)
        metrics.observe(endpoint, status, seconds)
    assert without_created(metrics.render()) == without_created(generate_latest(registry))


def test_matcher_up_follows_the_shared_map() -> None:
    up = {"BTC-USDT": True, "ETH-USDT": False}
    metrics = Metrics(up)
    text = metrics.render().decode()
    assert 'matchwire_gateway_matcher_up{symbol="BTC-USDT"} 1.0' in text
    assert 'matchwire_gateway_matcher_up{symbol="ETH-USDT"} 0.0' in text
    up["ETH-USDT"] = True
    assert 'matchwire_gateway_matcher_up{symbol="ETH-USDT"} 1.0' in metrics.render().decode()
