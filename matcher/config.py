"""The matcher's symbol rules: tick and lot sizes, bounds, fees, and each symbol's endpoints.

What a matcher needs to know about the symbol it serves, and what the gateway and the feed
hub show of it (`GET /`). The system's topology and keys (ports, API keys, CURVE key files,
the whole TOML file) are read by matcher/system.py; see docs/operations.md for the format.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

DEFAULT_SYMBOLS: dict[str, dict[str, str]] = {
    "BTC-USDT": {
        "tick_size": "0.01",
        "lot_size": "0.0001",
        "min_quantity": "0.0001",
        "max_price": "10000000",
        "max_quantity": "100000",
    },
    "ETH-USDT": {
        "tick_size": "0.01",
        "lot_size": "0.001",
        "min_quantity": "0.001",
        "max_price": "1000000",
        "max_quantity": "1000000",
    },
}
DEFAULT_MAKER_FEE_RATE = "0.0001"
DEFAULT_TAKER_FEE_RATE = "0.0002"


@dataclass(frozen=True)
class SymbolConfig:
    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    min_quantity: Decimal
    max_price: Decimal
    max_quantity: Decimal
    maker_fee_rate: Decimal
    taker_fee_rate: Decimal
    order_endpoint: str  # the matcher's ROUTER, as clients connect to it
    feed_endpoint: str  # the matcher's PUB
    metrics_port: int = 0  # the matcher's Prometheus /metrics port (0: off); not a rule

    def public(self) -> dict[str, str]:
        """The symbol's rules as GET / shows them: plain decimals ("0.00000001", where
        str() of a Decimal would say "1E-8")."""
        return {
            "tick_size": format(self.tick_size, "f"),
            "lot_size": format(self.lot_size, "f"),
            "min_quantity": format(self.min_quantity, "f"),
            "max_price": format(self.max_price, "f"),
            "max_quantity": format(self.max_quantity, "f"),
            "maker_fee_rate": format(self.maker_fee_rate, "f"),
            "taker_fee_rate": format(self.taker_fee_rate, "f"),
            "order_endpoint": self.order_endpoint,
            "feed_endpoint": self.feed_endpoint,
        }


class ConfigError(ValueError):
    """A configuration that cannot run: the message names the file, section and key."""


# The keys of a [symbols.X] table besides the rules (matcher/rules.py names those).
RULE_KEYS = (
    "tick_size",
    "lot_size",
    "min_quantity",
    "max_price",
    "max_quantity",
    "maker_fee_rate",
    "taker_fee_rate",
)
ENDPOINT_KEYS = ("order_endpoint", "feed_endpoint")
SYMBOL_KEYS = RULE_KEYS + ENDPOINT_KEYS


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ConfigError(f"{name}: {value!r} is not a decimal number")
    text = str(value)
    try:
        number = Decimal(text)
    except ArithmeticError as exc:
        raise ConfigError(f"{name}: {text!r} is not a decimal number") from exc
    if not number.is_finite() or number <= 0:
        raise ConfigError(f"{name}: {text!r} must be a positive finite number")
    return number


def _rate(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{name}: {value!r} is not a decimal number")
    try:
        rate = Decimal(str(value))
    except ArithmeticError as exc:
        raise ConfigError(f"{name}: {str(value)!r} is not a decimal number") from exc
    if not rate.is_finite() or rate < 0 or rate >= 1:
        raise ConfigError(f"{name} must be in [0, 1), not {str(value)!r}")
    return rate


def build_symbol(
    symbol: str, rules: dict[str, Any], host: str, router_port: int, pub_port: int
) -> SymbolConfig:
    """Build one symbol's config; endpoints default to host and the given ports.

    A built-in symbol (DEFAULT_SYMBOLS) keeps its built-in rules for every key `rules`
    does not name; another one gets generic defaults here (`load_config` insists that a
    configured one states tick_size and lot_size).
    """
    rules = {**DEFAULT_SYMBOLS.get(symbol, {}), **rules}
    tick = _decimal(rules.get("tick_size", "0.01"), f"{symbol}.tick_size")
    lot = _decimal(rules.get("lot_size", "0.0001"), f"{symbol}.lot_size")
    for name in ENDPOINT_KEYS:
        if name in rules and not isinstance(rules[name], str):
            raise ConfigError(f"{symbol}.{name} must be a string, not {rules[name]!r}")
    config = SymbolConfig(
        symbol=symbol,
        tick_size=tick,
        lot_size=lot,
        min_quantity=_decimal(rules.get("min_quantity", lot), f"{symbol}.min_quantity"),
        max_price=_decimal(rules.get("max_price", "10000000"), f"{symbol}.max_price"),
        max_quantity=_decimal(rules.get("max_quantity", "1000000"), f"{symbol}.max_quantity"),
        maker_fee_rate=_rate(
            rules.get("maker_fee_rate", DEFAULT_MAKER_FEE_RATE), f"{symbol}.maker_fee_rate"
        ),
        taker_fee_rate=_rate(
            rules.get("taker_fee_rate", DEFAULT_TAKER_FEE_RATE), f"{symbol}.taker_fee_rate"
        ),
        order_endpoint=str(rules.get("order_endpoint", f"tcp://{host}:{router_port}")),
        feed_endpoint=str(rules.get("feed_endpoint", f"tcp://{host}:{pub_port}")),
    )
    for name in ("min_quantity", "max_quantity"):
        if getattr(config, name) % lot:
            raise ConfigError(f"{symbol}.{name} must be a multiple of lot_size {lot}")
    if config.max_price % tick:
        raise ConfigError(f"{symbol}.max_price must be a multiple of tick_size {tick}")
    if config.max_price / tick >= 2**62 or config.max_quantity / lot >= 2**62:
        raise ConfigError(f"{symbol}: max_price/max_quantity must stay inside 62-bit ticks/lots")
    for name in ("maker_fee_rate", "taker_fee_rate"):
        scaled = getattr(config, name) * 100_000_000
        if scaled != scaled.to_integral_value():
            raise ConfigError(f"{symbol}.{name} has more than 8 decimal places")
    return config
