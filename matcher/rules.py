"""A symbol's rules as journaled state: the rules command, its checks and the rescale.

The journal holds prices and quantities as integers (docs/journal.md), which mean
nothing without the grid they were written on, so the rules (tick, lot, minimum, maxima,
fee rates) are state like the book: a rules command (CMD_RULES, matcher/protocol.py) is
the first record of every journal and carries each later change, snapshots carry the
rules in force, and replay takes them from there, never from the configuration.

Integers count *grid units*, one for prices and one for quantities. A journal starts
with the tick and the lot as its units. A rules change whose new tick (lot) is not a
multiple of the current unit makes the unit finer: the greatest common divisor of the
two, so every integer in the state - history included - is multiplied by a whole number
and stays exact. A coarser tick (lot) keeps the unit; the grid is then checked at the
edge (matcher/units.py). Either way a resting order or a pending stop off the new grid
refuses the change, naming it. Pure functions: no I/O, deterministic (replay applies them).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal, localcontext
from fractions import Fraction
from math import gcd
from typing import Any

from matcher import candles
from matcher.config import RULE_KEYS, SymbolConfig
from matcher.protocol import CMD_RULES, FEE_RATE_SCALE, Code, CommandError

RULE_NAMES = RULE_KEYS  # the order of the rules in a rules command
Rules = tuple[str, ...]  # one canonical decimal text per RULE_NAMES entry
GridUnits = tuple[str, str]  # (price unit, quantity unit): what one integer is worth
MAX_UNITS = 2**62  # max_price / max_quantity in units must fit (as config.py checks)


def canonical(number: Decimal) -> str:
    """The one text of a decimal in a rules command: "0.01", "10000000" (no E, no trailing 0)."""
    return format(number.normalize(), "f")


def rules_of(config: SymbolConfig) -> Rules:
    return tuple(canonical(getattr(config, name)) for name in RULE_NAMES)


def with_rules(config: SymbolConfig, rules: Rules) -> SymbolConfig:
    """`config` (endpoints and all) with the journaled `rules` in place of its own."""
    values: dict[str, Any] = {
        name: Decimal(text) for name, text in zip(RULE_NAMES, rules, strict=True)
    }
    return dataclasses.replace(config, **values)


def differences(journaled: Rules, configured: Rules) -> list[str]:
    """One "name: journaled X, configured Y" line per rule that differs (compared as numbers)."""
    return [
        f"{name}: journaled {old}, configured {new}"
        for name, old, new in zip(RULE_NAMES, journaled, configured, strict=True)
        if Decimal(old) != Decimal(new)
    ]


def rules_command(seq: int, ts: int, rules: Rules) -> tuple:
    return (CMD_RULES, seq, ts, *rules)


def _decimal_text(value: Fraction) -> str:
    """A fraction whose denominator divides a power of ten, as canonical decimal text."""
    with localcontext() as context:
        context.prec = 80  # exact for any grid a configuration can state
        return canonical(Decimal(value.numerator) / Decimal(value.denominator))


def _fraction_gcd(a: Fraction, b: Fraction) -> Fraction:
    denominator = a.denominator * b.denominator // gcd(a.denominator, b.denominator)
    return Fraction(gcd(int(a * denominator), int(b * denominator)), denominator)


@dataclasses.dataclass(frozen=True)
class RulesChange:
    """What applying a rules command does to the state (all integers, exact)."""

    rules: Rules
    units: GridUnits
    price_factor: int  # old integer price * price_factor = new integer price
    quantity_factor: int
    price_step: int  # new tick in new price units: a live price must be a multiple
    quantity_step: int
    maker_rate: int  # over FEE_RATE_SCALE
    taker_rate: int
    regrid: bool  # tick or lot changed: live orders must be checked


def plan(current: Rules | None, units: GridUnits | None, command: tuple) -> RulesChange:
    """Check a rules command against the state's rules and units; CommandError if bad."""
    rules = tuple(command[3:])
    if len(rules) != len(RULE_NAMES) or not all(type(text) is str for text in rules):
        raise CommandError(Code.INVALID_REQUEST, "a rules command carries 7 decimal texts")
    try:
        values = [Fraction(text) for text in rules]
    except ValueError:
        raise CommandError(Code.INVALID_REQUEST, f"rules are not decimals: {rules!r}") from None
    tick, lot, min_quantity, max_price, max_quantity, maker, taker = values
    if min(tick, lot, min_quantity, max_price, max_quantity) <= 0 or not (
        0 <= maker < 1 and 0 <= taker < 1
    ):
        raise CommandError(Code.INVALID_REQUEST, f"rules out of range: {rules!r}")
    if current is None or units is None:
        old_price_unit, old_quantity_unit = tick, lot  # the first rules: integers are ticks, lots
    else:
        old_price_unit, old_quantity_unit = Fraction(units[0]), Fraction(units[1])
    price_unit = _fraction_gcd(old_price_unit, tick)
    quantity_unit = _fraction_gcd(old_quantity_unit, lot)
    if max_price / price_unit >= MAX_UNITS or max_quantity / quantity_unit >= MAX_UNITS:
        raise CommandError(
            Code.RULES_REFUSED,
            "max_price/max_quantity would not fit in 62-bit integers of the new grid",
        )
    maker_rate, taker_rate = maker * FEE_RATE_SCALE, taker * FEE_RATE_SCALE
    if maker_rate.denominator != 1 or taker_rate.denominator != 1:
        raise CommandError(Code.RULES_REFUSED, "fee rates have more than 8 decimal places")
    return RulesChange(
        rules=rules,
        units=(_decimal_text(price_unit), _decimal_text(quantity_unit)),
        price_factor=int(old_price_unit / price_unit),
        quantity_factor=int(old_quantity_unit / quantity_unit),
        price_step=int(tick / price_unit),
        quantity_step=int(lot / quantity_unit),
        maker_rate=int(maker_rate),
        taker_rate=int(taker_rate),
        regrid=current is not None and (current[0], current[1]) != (rules[0], rules[1]),
    )


# Order rows of Engine.export_state (matcher/book.py `Order.to_tuple`).
_ID, _PRICE, _QUANTITY, _LEAVES, _STOP_PRICE = 0, 3, 4, 5, 10
# Trade rows: (EV_TRADE, trade_id, price, quantity, side, maker, taker, maker_fee, taker_fee, ts)
_T_PRICE, _T_QUANTITY, _T_MAKER_FEE, _T_TAKER_FEE = 2, 3, 7, 8


def check_grid(state: dict[str, Any], change: RulesChange) -> None:
    """CommandError naming the first resting order or pending stop off the new grid."""
    p, q = change.price_factor, change.quantity_factor
    p_step, q_step = change.price_step, change.quantity_step
    for kind, rows in (("resting order", state["resting"]), ("pending stop", state["stops"])):
        for row in rows:
            prices = [row[_PRICE], row[_STOP_PRICE]]
            if any(price is not None and price * p % p_step for price in prices):
                raise CommandError(
                    Code.RULES_REFUSED,
                    f"{kind} {row[_ID]} is off the new tick_size {change.rules[0]}",
                )
            if row[_QUANTITY] * q % q_step or row[_LEAVES] * q % q_step:
                raise CommandError(
                    Code.RULES_REFUSED,
                    f"{kind} {row[_ID]} is off the new lot_size {change.rules[1]}",
                )


def rescale_state(state: dict[str, Any], change: RulesChange) -> dict[str, Any]:
    """`Engine.export_state()` output in the new grid units: every price, quantity and fee
    of the book, the stops, the finished window, the kept trades and the candles, multiplied exactly."""
    p, q = change.price_factor, change.quantity_factor

    def order(row: tuple) -> tuple:
        fields = list(row)
        for index, factor in ((_PRICE, p), (_STOP_PRICE, p), (_QUANTITY, q), (_LEAVES, q)):
            if fields[index] is not None:
                fields[index] *= factor
        return tuple(fields)

    def trade(row: tuple) -> tuple:
        fields = list(row)
        fields[_T_PRICE] *= p
        fields[_T_QUANTITY] *= q
        for index in (_T_MAKER_FEE, _T_TAKER_FEE):  # text in snapshots (they can exceed 64 bits)
            fields[index] = str(int(fields[index]) * p * q)
        return tuple(fields)

    last_price = state["last_price"]
    return {
        **state,
        "last_price": None if last_price is None else last_price * p,
        "resting": [order(row) for row in state["resting"]],
        "stops": [order(row) for row in state["stops"]],
        "finished": [order(row) for row in state["finished"]],
        "trades": [trade(row) for row in state["trades"]],
        **(
            {"candles": candles.rescale_state(state["candles"], p, q)} if "candles" in state else {}
        ),
    }
