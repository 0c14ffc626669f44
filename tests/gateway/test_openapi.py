"""gateway/openapi.py: /openapi.json is valid OpenAPI 3.0, lists exactly the app's routes,
says what the server does (bodies, query parameters, answers, errors), and a bounded
schemathesis run against a live system (real matchers, gateway and feed hub on loopback)
finds nothing."""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate
from schemathesis.specs.openapi import unregister_string_format
from starlette.routing import Mount, Route

from gateway import openapi
from gateway.app import create_app
from gateway.validation import AMEND_FIELDS, CANCEL_FIELDS, NEW_ORDER_FIELDS, NEW_STOP_FIELDS
from matcher.protocol import ORDER_FIELDS, SHAPES, TRADE_FIELDS
from matcher.system import load_config
from tests.gateway.conftest import BTC, ETH, GatewaySystem
from tests.support import write_config


def served_document(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return dict(json.loads(response.content))


def auth_on_app(tmp_path: Path) -> Any:
    path = tmp_path / "auth.toml"
    write_config(
        path,
        {"host": "127.0.0.1"},
        {BTC: {"tick_size": "0.01"}},
        {"k-alice": {"account": "alice", "rate_limit": 5}},
    )
    return create_app(load_config(path))


def test_the_served_document_is_valid_openapi_3_0(http: httpx.Client) -> None:
    document = served_document(http)
    validate(document)  # raises, naming what is wrong
    assert document["openapi"].startswith("3.0.")


def test_the_auth_on_document_is_valid_and_asks_for_the_key(tmp_path: Path) -> None:
    document = json.loads(auth_on_app(tmp_path).gateway.openapi)
    validate(document)
    scheme = document["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    submit = document["paths"]["/submit_order"]["post"]
    assert submit["security"] == [{"ApiKey": []}]
    assert {"401", "429"} <= set(submit["responses"])
    assert "Retry-After" in submit["responses"]["429"]["headers"]
    book = document["paths"]["/orderbook/{symbol}"]["get"]
    assert "security" not in book and "401" not in book["responses"]  # market data is public


def test_every_route_is_in_the_document_and_every_operation_is_a_route() -> None:
    app = create_app(load_config())
    document = json.loads(app.gateway.openapi)
    routes = set()
    for route in app.app.routes:
        if isinstance(route, Mount):  # /static: files, not API operations
            assert route.path == "/static"
            continue
        assert isinstance(route, Route) and route.methods is not None
        routes |= {
            (method.lower(), openapi.document_path(route.path))
            for method in route.methods - {"HEAD"}
        }
    operations = {(method, path) for path, item in document["paths"].items() for method in item}
    assert routes == operations
    assert len(operations) == len(openapi.ENDPOINTS)


def test_request_bodies_follow_the_validation_tables(http: httpx.Client) -> None:
    paths = served_document(http)["paths"]
    for path, fields in (
        ("/submit_order", NEW_ORDER_FIELDS),
        ("/cancel_order", CANCEL_FIELDS),
        ("/amend_order", AMEND_FIELDS),
        ("/submit_stop_order", NEW_STOP_FIELDS),
    ):
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["additionalProperties"] is False
        assert list(body["properties"]) == list(fields)
        assert set(body["required"]) <= set(fields)
        assert body["properties"]["symbol"]["enum"] == [BTC, ETH]
        for name, schema in body["properties"].items():
            if name == "order_id":
                assert (schema["type"], schema["minimum"]) == ("integer", 1)
            if name in ("price", "quantity", "stop_price"):
                assert schema["oneOf"][0]["pattern"] == r"^[0-9]+(\.[0-9]+)?$"
        assert {"400", "404", "413", "503"} <= set(paths[path]["post"]["responses"])
    submit = paths["/submit_order"]["post"]["requestBody"]["content"]["application/json"]
    assert submit["schema"]["properties"]["order_type"]["enum"] == ["market", "limit", "ioc", "fok"]
    assert submit["schema"]["properties"]["side"]["enum"] == ["buy", "sell"]


def test_answers_are_the_public_shapes(http: httpx.Client) -> None:
    document = served_document(http)
    schemas = document["components"]["schemas"]
    assert set(SHAPES) <= set(schemas)
    assert schemas["Order"]["required"] == list(ORDER_FIELDS)
    assert schemas["Trade"]["required"] == list(TRADE_FIELDS)
    assert schemas["Order"]["additionalProperties"] is False
    assert schemas["Exchange"]["additionalProperties"] is True  # GET / may grow
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "200" in operation["responses"], (method, path)
            assert "400" in operation["responses"], (method, path)  # strict query strings
            for status, response in operation["responses"].items():
                assert response.get("content"), (method, path, status)


def test_accounts_and_client_order_ids_are_documented_printable(http: httpx.Client) -> None:
    """schemathesis found it: a plain string is not enough, the server refuses an account
    with a control character (400), so the document says `format: printable`."""
    paths = served_document(http)["paths"]
    submit = paths["/submit_order"]["post"]["requestBody"]["content"]["application/json"]
    for name in ("account", "client_order_id"):
        assert submit["schema"]["properties"][name]["format"] == "printable"
    account = next(
        p for p in paths["/orders/{symbol}"]["get"]["parameters"] if p["name"] == "account"
    )
    assert account["schema"] == {
        "type": "string",
        "format": "printable",
        "minLength": 1,
        "maxLength": 64,
    }
    refused = http.get(f"/orders/{BTC}", params={"account": "\x0ebob"})
    assert refused.status_code == 400
    assert "printable" in refused.json()["error"]["message"]


def validate_answer(document: dict[str, Any], shape: str, answer: Any) -> None:
    """Raises unless `answer` is an instance of the document's schema of `shape`."""
    root = {"$ref": f"#/components/schemas/{shape}", "components": document["components"]}
    OAS30Validator(root, format_checker=OAS30Validator.FORMAT_CHECKER).validate(answer)


def test_get_root_shows_tiny_rules_as_plain_decimals(tmp_path: Path) -> None:
    """A rule of 0.00000001 (a satoshi) is "0.00000001" in GET /, as the document says
    a decimal is, not Python's "1E-8"."""
    path = tmp_path / "tiny.toml"
    write_config(
        path,
        {"host": "127.0.0.1"},
        {
            "SAT-BTC": {
                "tick_size": "0.00000001",
                "lot_size": "0.00000001",
                "min_quantity": "0.00000001",
                "max_price": "10000000",
                "max_quantity": "1e7",
                "maker_fee_rate": "0.00000001",
                "taker_fee_rate": "0.00000002",
            }
        },
    )
    app = create_app(load_config(path))
    info = json.loads(app.gateway.info)
    rules = info["symbols"]["SAT-BTC"]
    assert (rules["tick_size"], rules["max_quantity"]) == ("0.00000001", "10000000")
    assert rules["maker_fee_rate"] == "0.00000001"
    validate_answer(json.loads(app.gateway.openapi), "Exchange", info)


def test_each_endpoint_takes_exactly_its_documented_query_parameters(
    system: GatewaySystem, http: httpx.Client
) -> None:
    """The server's check and the document come from the same row."""
    for path, item in served_document(http)["paths"].items():
        method, operation = next(iter(item.items()))
        documented = sorted(
            p["name"] for p in operation.get("parameters", []) if p["in"] == "query"
        )
        url = path.replace("{symbol}", BTC).replace("{order_id}", "1")
        refused = http.request(method.upper(), url, params={"zzz": "1"})
        assert refused.status_code == 400, url
        takes = ", ".join(documented) if documented else "no query parameters"
        assert refused.json()["error"]["message"] == (
            f"unknown query parameter 'zzz'; this endpoint takes {takes}"
        ), url


# -- schemathesis ------------------------------------------------------------------


class LoopbackSession(requests.Session):
    """A requests session that sends only to loopback addresses, and counts the answers
    by method, path and status."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: Counter[tuple[str, str, int]] = Counter()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        url = urlsplit(str(request.url))
        assert ipaddress.ip_address(url.hostname or "").is_loopback, f"not loopback: {url}"
        response = super().send(request, **kwargs)
        self.answers[str(request.method), url.path, response.status_code] += 1
        return response


SEED = 20261204
EXAMPLES_PER_OPERATION = 40
ORDER_RULES_STATUSES = ["2xx", "400", "404", "409"]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewaySystem]:
    """A system of its own: the run leaves orders on its books. A matcher that answers
    late on a loaded machine would be a 503 (documented, but a server error to
    schemathesis): the gateway waits longer than in the other tests."""
    running = GatewaySystem(
        tmp_path_factory.mktemp("fuzzed"), (BTC, ETH), feedhub=True, matcher_timeout=30.0
    ).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def session() -> Iterator[LoopbackSession]:
    with LoopbackSession() as opened:
        yield opened
    # The run is bounded, and it did run: a few hundred requests (369 with this seed),
    # and it got as far as placing orders (the bodies' examples).
    sent = sum(opened.answers.values())
    assert 100 <= sent <= 2000, f"schemathesis sent {sent} requests"
    assert opened.answers["POST", "/submit_order", 200], opened.answers
    assert opened.answers["POST", "/submit_stop_order", 200], opened.answers


def printable_identifiers() -> st.SearchStrategy[str]:
    """The API's own string format `printable` (gateway/openapi.py): what str.isprintable
    accepts, 1..64 characters."""
    unprintable = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")
    character = st.characters(exclude_categories=unprintable) | st.just(" ")
    return st.text(character, min_size=1, max_size=64)


@pytest.fixture(scope="module")
def api_schema(fuzzed: GatewaySystem) -> Iterator[Any]:
    schemathesis.openapi.format("printable", printable_identifiers())
    with fuzzed.http() as http:
        document = served_document(http)
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": fuzzed.base,
            "cache": {"enabled": False},  # no replay of earlier runs' crashes: the seed decides
            "generation": {"max-examples": EXAMPLES_PER_OPERATION, "no-shrink": True},
            # The coverage phase builds each of its cases with a Hypothesis run of its own:
            # minutes on this machine. The fuzzing phase draws valid and invalid data alike.
            "phases": {"coverage": {"enabled": False}},
            # Every check is on. A well-formed order can still be refused by the symbol's
            # rules, which no schema can state (the tick and lot grids, min_quantity and the
            # bounds, a stop that would trigger at once, post_only that would take): 400
            # is a valid answer to a schema-valid order, and only there.
            "operations": [
                {
                    "include-path-regex": "^/(submit_order|submit_stop_order|amend_order|cancel_order)$",
                    "checks": {
                        "positive_data_acceptance": {"expected-statuses": ORDER_RULES_STATUSES}
                    },
                },
                {
                    # /health answers 503 (status degraded) when a ping is late: its answer, not a
                    # fault (a loaded machine can delay one past the ping timeout).
                    "include-path": "/health",
                    "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "4xx", "503"]}},
                },
            ],
        }
    )
    yield schemathesis.openapi.from_dict(document, config=config)
    unregister_string_format("printable")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_finds_nothing(
    case: Any, fuzzed: GatewaySystem, session: LoopbackSession
) -> None:
    case.call_and_validate(session=session, timeout=30)
