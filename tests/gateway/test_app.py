"""The service endpoints of gateway/app.py: /, /health, /metrics, /openapi.json, /test."""

from __future__ import annotations

import json

import httpx

from clients.rest import RestClient
from gateway.app import STATIC_DIR
from tests.gateway.conftest import BTC, ETH, GatewaySystem
from tests.support import wait_until


def test_root_describes_the_exchange(system: GatewaySystem, http: httpx.Client) -> None:
    info = http.get("/").json()
    assert info["name"] == "matchwire"
    assert info["version"]
    assert info["feed_url"] == f"ws://127.0.0.1:{system.ws_port}"
    assert set(info["symbols"]) == {BTC, ETH}
    btc = info["symbols"][BTC]
    assert btc == {
        "tick_size": "0.01",
        "lot_size": "0.0001",
        "min_quantity": "0.0001",
        "max_price": "10000000",
        "max_quantity": "100000",
        "maker_fee_rate": "0.0001",
        "taker_fee_rate": "0.0002",
        "order_endpoint": system.endpoints[BTC][0],
        "feed_endpoint": system.endpoints[BTC][1],
        "metrics_endpoint": None,
    }


def test_health_ok_with_every_matcher_and_the_feed_hub(system: GatewaySystem) -> None:
    with RestClient(system.base) as rest:
        health = wait_until(lambda: (h := rest.health())["status"] == "ok" and h)
    assert health["feedhub"] == {"status": "up"}
    for symbol in (BTC, ETH):
        matcher = health["matchers"][symbol]
        assert matcher["status"] == "up"
        assert isinstance(matcher["seq"], int) and isinstance(matcher["book_seq"], int)
    with system.http() as http:
        assert http.get("/health").status_code == 200


def test_metrics_count_requests_by_endpoint_and_status(http: httpx.Client) -> None:
    http.get("/bbo/BTC-USDT")
    http.get("/bbo/NOPE-USDT")
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'matchwire_gateway_requests_total{endpoint="bbo",status="200"}' in text
    assert 'matchwire_gateway_requests_total{endpoint="bbo",status="404"}' in text
    assert 'matchwire_gateway_request_seconds_bucket{endpoint="bbo",le="0.001"}' in text
    assert 'matchwire_gateway_matcher_up{symbol="BTC-USDT"} 1.0' in text
    assert 'matchwire_gateway_matcher_up{symbol="ETH-USDT"} 1.0' in text


def test_openapi_lists_every_path(http: httpx.Client) -> None:
    response = http.get("/openapi.json")
    assert response.headers["content-type"] == "application/json"
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) == {
        "/submit_order",
        "/submit_stop_order",
        "/cancel_order",
        "/amend_order",
        "/cancel_all",
        "/orders/{symbol}/client/{client_order_id}",
        "/orders/{symbol}/{order_id}",
        "/orders/{symbol}",
        "/orderbook/{symbol}",
        "/bbo/{symbol}",
        "/trades/{symbol}",
        "/candles/{symbol}",
        "/ticker/{symbol}",
        "/health",
        "/",
        "/metrics",
        "/openapi.json",
        "/test",
    }
    candles = schema["paths"]["/candles/{symbol}"]["get"]
    assert [p["name"] for p in candles["parameters"] if p["in"] == "query"] == [
        "interval",
        "limit",
        "start",
        "end",
    ]
    assert set(schema["paths"]["/submit_order"]) == {"post"}
    assert "200" in json.dumps(schema["paths"]["/submit_order"]["post"]["responses"])
    assert "Order" in schema["components"]["schemas"]


def test_dashboard_and_static_files(http: httpx.Client) -> None:
    page = http.get("/test")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.content == (STATIC_DIR / "dashboard.html").read_bytes()
    static = http.get("/static/dashboard.html")
    assert static.status_code == 200 and static.content == page.content
    assert http.get("/static/no-such-file.js").status_code == 404


def test_order_endpoints_answer_like_starlette_routes(http: httpx.Client) -> None:
    """POST to an order endpoint takes GatewayApp's direct path: same headers, the same
    error shape, counted and timed like every other endpoint; other methods on those
    paths, and other paths, are still Starlette's."""
    order = {
        "symbol": BTC,
        "order_type": "limit",
        "side": "buy",
        "price": "100",
        "quantity": "0.01",
        "account": "direct-path",
    }
    placed = http.post("/submit_order", json=order)
    assert placed.status_code == 200
    assert placed.headers["content-type"] == "application/json"
    assert int(placed.headers["content-length"]) == len(placed.content)
    assert placed.json()["status"] == "new"
    refused = http.post(
        "/cancel_order", json={"symbol": BTC, "order_id": 999_999_999, "account": "direct-path"}
    )
    assert (refused.status_code, refused.headers["content-type"]) == (404, "application/json")
    assert refused.json()["error"]["code"] == "unknown_order"
    cancelled = http.post(
        "/cancel_order",
        json={"symbol": BTC, "order_id": placed.json()["order_id"], "account": "direct-path"},
    )
    assert cancelled.json()["status"] == "cancelled"
    assert http.put("/submit_order", json=order).status_code == 405
    moved = http.post("/submit_order/", json=order)  # Starlette's redirect_slashes
    assert moved.status_code == 307 and moved.headers["location"].endswith("/submit_order")
    text = http.get("/metrics").text
    assert 'matchwire_gateway_requests_total{endpoint="submit_order",status="200"}' in text
    assert 'matchwire_gateway_requests_total{endpoint="cancel_order",status="404"}' in text
    assert 'matchwire_gateway_request_seconds_bucket{endpoint="cancel_order",le="0.001"}' in text
