"""The system's configuration file: topology and keys, read the same way by every process.

One TOML file (docs/operations.md) tells every part of the system where the others are:
the [server] settings (the ports of the gateway, the feed hub and the matchers, the
journal's folder and policy), the symbols ([symbols.X]: the matcher's rules, from
matcher/config.py, and endpoints), the gateway's API keys ([api_keys.K]) and the CURVE key
files ([curve]). Every process reads the whole file strictly, a matcher started alone
included, so the reader sits in the lowest layer; it holds numbers and names only and
knows no HTTP, WebSocket or client. Each owner interprets its own part: the gateway
(gateway/auth.py, gateway/matchers.py), the feed hub (feedhub/server.py), the matcher
(matcher/service.py, matcher/curve.py) and run.py, which starts them all.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import sys
import tomllib
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Union

from matcher.config import (
    DEFAULT_SYMBOLS,
    SYMBOL_KEYS,
    ConfigError,
    SymbolConfig,
    build_symbol,
)
from matcher.journal import FSYNC_POLICIES, SEGMENT_BYTES


@dataclass(frozen=True)
class ApiKey:
    key: str
    account: str
    rate_limit: float | None = None  # requests per second; None: unlimited
    burst: int | None = None


@dataclass(frozen=True)
class CurveClient:
    """A listed client key of the matchers: a raw client's account, or a trusted role."""

    public_key: Path  # its certificate file (NAME.key)
    account: str | None = None
    role: str | None = None  # "gateway" or "feedhub": may name any account


@dataclass(frozen=True)
class CurveConfig:
    """`[curve]`: key files (relative paths are the config file's folder's). Each process
    reads only the files it needs: a matcher its secret and the clients' public keys, the
    gateway and the feed hub their own secret and the matchers' public key."""

    matcher_public: Path
    matcher_secret: Path | None = None
    gateway_secret: Path | None = None
    feedhub_secret: Path | None = None
    clients: tuple[CurveClient, ...] = ()


# The trusted roles of a [curve] client key: may name any account (matcher/curve.py).
CURVE_ROLES = ("gateway", "feedhub")


def parse_curve(raw: dict[str, Any], base: Path) -> CurveConfig:
    """`[curve]` -> CurveConfig; ValueError naming what is wrong."""
    known = {"matcher_public", "matcher_secret", "gateway_secret", "feedhub_secret", "clients"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"[curve]: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    if not raw.get("matcher_public"):
        raise ValueError("[curve] needs matcher_public: the matchers' public key file")

    def path(value: Any) -> Path:
        return base / str(value)

    clients = []
    for i, entry in enumerate(raw.get("clients") or ()):
        if not isinstance(entry, dict) or "public_key" not in entry:
            raise ValueError(f"[curve] clients[{i}]: a table with public_key and account or role")
        account, role = entry.get("account"), entry.get("role")
        if (account is None) == (role is None):
            raise ValueError(f"[curve] clients[{i}]: exactly one of account or role")
        if role is not None and role not in CURVE_ROLES:
            raise ValueError(f"[curve] clients[{i}]: role {role!r}: {' or '.join(CURVE_ROLES)}")
        if account is not None and (not isinstance(account, str) or not account):
            raise ValueError(f"[curve] clients[{i}]: account must be a non-empty string")
        clients.append(CurveClient(path(entry["public_key"]), account, role))
    return CurveConfig(
        matcher_public=path(raw["matcher_public"]),
        matcher_secret=path(raw["matcher_secret"]) if raw.get("matcher_secret") else None,
        gateway_secret=path(raw["gateway_secret"]) if raw.get("gateway_secret") else None,
        feedhub_secret=path(raw["feedhub_secret"]) if raw.get("feedhub_secret") else None,
        clients=tuple(clients),
    )


@dataclass(frozen=True)
class SystemConfig:
    host: str = "127.0.0.1"
    http_port: int = 8000
    ws_port: int = 8001
    zmq_port: int = 5555
    data_dir: Path = Path("data")
    fsync: str = "batch"
    snapshot_every: int = 100_000
    prune_segments: bool = False  # keep the full history by default
    segment_bytes: int = SEGMENT_BYTES
    matcher_timeout: float = 2.0  # the gateway's wait for a matcher: each command's deadline
    ws_max_connections: int = 10_000  # the feed hub refuses more with 1013
    gateway_link: str = ""  # "auto", "zmtp" or "pyzmq"; "": MATCHWIRE_GATEWAY_LINK, else auto
    metrics_port: int = 0  # matcher i serves /metrics on metrics_port + i; 0: off
    symbols: dict[str, SymbolConfig] = field(default_factory=dict)
    api_keys: dict[str, ApiKey] = field(default_factory=dict)
    curve: CurveConfig | None = None  # [curve]: CurveZMQ on the matchers' sockets

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @property
    def feed_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


API_KEY_KEYS = ("account", "rate_limit", "burst")
# Every [server] key is a SystemConfig field (one definition: a field added there is
# accepted here with no second list to edit); these two are tables of their own.
NOT_SERVER_KEYS = frozenset(("symbols", "api_keys", "curve"))
POSITIVE_SERVER_KEYS = frozenset(("snapshot_every", "segment_bytes", "ws_max_connections"))


def _server_fields() -> dict[str, Any]:
    """[server] key -> its type, from the SystemConfig dataclass."""
    hints = typing.get_type_hints(SystemConfig)
    return {f.name: hints[f.name] for f in fields(SystemConfig) if f.name not in NOT_SERVER_KEYS}


def _server_value(key: str, value: Any, kind: Any, where: str) -> Any:
    """`value` checked against the field's type (TOML gives str, int, float, bool)."""
    options = typing.get_args(kind) if typing.get_origin(kind) in (Union, types.UnionType) else ()
    if options:  # `X | None`: TOML has no null, so X
        kind = next(option for option in options if option is not type(None))
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise ConfigError(f"{where}{key} must be a finite number, not {value!r}")
    elif kind is Path:
        ok = isinstance(value, (str, Path))
        value = Path(value) if ok else value
    else:  # str, and any other type: that type (list for list[str]); unknown: as given
        origin = typing.get_origin(kind) or kind
        ok = isinstance(value, origin) if isinstance(origin, type) else True
    if not ok:
        name = getattr(kind, "__name__", str(kind))
        raise ConfigError(f"{where}{key} must be {name}, not {type(value).__name__} {value!r}")
    if key == "fsync" and value not in FSYNC_POLICIES:
        raise ConfigError(f"{where}fsync must be always, batch or off, not {value!r}")
    if key == "gateway_link" and value not in ("", "auto", "zmtp", "pyzmq"):
        raise ConfigError(f"{where}gateway_link must be auto, zmtp or pyzmq, not {value!r}")
    if key == "matcher_timeout" and not 0 < value < 3600:
        raise ConfigError(f"{where}matcher_timeout must be in (0, 3600) seconds, not {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        off = key == "metrics_port" and value == 0  # the one port that 0 turns off
        if key.endswith("_port") and not 1 <= value <= 65535 and not off:
            raise ConfigError(f"{where}{key} must be a port in 1..65535, not {value!r}")
        if key in POSITIVE_SERVER_KEYS and value <= 0:
            raise ConfigError(f"{where}{key} must be positive, not {value!r}")
        if value < 0:
            raise ConfigError(f"{where}{key} must not be negative, not {value!r}")
    return value


def _table(raw: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}[{name}] must be a table, not {type(table).__name__}")
    return table


def _refuse_unknown(table: dict[str, Any], known: Any, section: str, where: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(
                f"{where}unknown key {key!r} in [{section}] (known: {', '.join(sorted(known))})"
            )


def _read(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_config(path: str | Path | None = None, **overrides: Any) -> SystemConfig:
    """Read the TOML file (or the embedded default) and apply command-line overrides.

    Strict (docs/operations.md): an unknown section or key, or a value of the wrong type,
    is a ConfigError naming it. Overrides with the value None are ignored, so argparse
    results can be passed as-is. `symbols` may be a list of names to keep (from --symbols).
    """
    raw: dict[str, Any] = _read(path) if path is not None else {}
    where = f"{path}: " if path is not None else ""
    for section in raw:
        if section not in ("server", "symbols", "api_keys", "curve"):
            kind = "section" if isinstance(raw[section], dict) else "key"
            raise ConfigError(
                f"{where}unknown {kind} {section!r} at the top level "
                f"(known sections: [server], [symbols.X], [api_keys.K], "
                f"[curve])"
            )
    known = _server_fields()
    server: dict[str, Any] = {}
    table = _table(raw, "server", where)
    _refuse_unknown(table, known, "server", where)
    for key, value in table.items():
        server[key] = _server_value(key, value, known[key], f"{where}[server] ")
    for key, value in overrides.items():
        if value is None or key == "symbols":
            continue
        if key not in known:
            raise ConfigError(f"unknown setting {key!r}")
        server[key] = _server_value(key, value, known[key], "--")
    host = server.get("host", "127.0.0.1")
    zmq_port = server.get("zmq_port", 5555)
    metrics_port = server.get("metrics_port", 0)
    symbol_rules: dict[str, dict[str, Any]] = {}
    for name, rules in _table(raw, "symbols", where).items():
        if not isinstance(rules, dict):
            raise ConfigError(f"{where}[symbols] {name!r} must be a table ([symbols.{name}])")
        _refuse_unknown(rules, SYMBOL_KEYS, f"symbols.{name}", where)
        if name not in DEFAULT_SYMBOLS:
            missing = [key for key in ("tick_size", "lot_size") if key not in rules]
            if missing:
                raise ConfigError(
                    f"{where}[symbols.{name}] must state {' and '.join(missing)}"
                    f" ({name} is not a built-in symbol)"
                )
        symbol_rules[name] = rules
    if not symbol_rules:
        symbol_rules = {name: {} for name in DEFAULT_SYMBOLS}
    wanted = overrides.get("symbols")
    for name in wanted or ():
        if name not in symbol_rules:
            if name not in DEFAULT_SYMBOLS:
                raise ConfigError(
                    f"{where}symbol {name!r} is not configured and not built in "
                    f"(built in: {', '.join(DEFAULT_SYMBOLS)}): add a "
                    f"[symbols.{name}] table with tick_size and lot_size"
                )
            symbol_rules[name] = {}  # a built-in symbol named on the command line
    # Ports follow each symbol's place in the full list, so one matcher started alone
    # binds the same endpoints as when the whole system starts.
    symbols = {}
    for i, (name, rules) in enumerate(symbol_rules.items()):
        if not wanted or name in wanted:
            try:
                symbols[name] = build_symbol(
                    name, rules, host, zmq_port + 2 * i, zmq_port + 2 * i + 1
                )
            except ConfigError as exc:
                raise ConfigError(f"{where}[symbols.{name}] {exc}") from None
            if metrics_port:
                if metrics_port + i > 65535:
                    raise ConfigError(
                        f"{where}[server] metrics_port {metrics_port} + {i} "
                        f"(the index of {name}) is past port 65535"
                    )
                symbols[name] = replace(symbols[name], metrics_port=metrics_port + i)
    api_keys = {}
    for key, entry in _table(raw, "api_keys", where).items():
        section = f"api_keys.{key}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}[api_keys] {key!r} must be a table ([{section}])")
        _refuse_unknown(entry, API_KEY_KEYS, section, where)
        account = entry.get("account")
        if not isinstance(account, str) or not account:
            raise ConfigError(f"{where}[{section}] account must be a non-empty string")
        rate = entry.get("rate_limit")
        if rate is not None and (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not math.isfinite(rate)
            or rate <= 0
        ):
            raise ConfigError(
                f"{where}[{section}] rate_limit must be a positive number, not {rate!r}"
            )
        burst = entry.get("burst")
        if burst is not None and (
            isinstance(burst, bool) or not isinstance(burst, int) or burst < 1
        ):
            raise ConfigError(f"{where}[{section}] burst must be a positive integer, not {burst!r}")
        api_keys[key] = ApiKey(
            key=key,
            account=account,
            rate_limit=float(rate) if rate is not None else None,
            burst=burst,
        )
    curve_table = raw.get("curve")
    try:
        curve = (
            parse_curve(curve_table, Path(path).parent if path else Path("."))
            if curve_table
            else None
        )
    except ValueError as exc:
        raise ConfigError(f"{where}{exc}") from None
    return SystemConfig(**server, symbols=symbols, api_keys=api_keys, curve=curve)


# What reading a configuration can raise: ConfigError (a ValueError) and what is not one.
CONFIG_ERRORS = (OSError, ValueError, KeyError)


def symbols_flag(text: str | None) -> list[str] | None:
    """`--symbols A,B` -> ["A", "B"]; not given (or only commas) -> None: all configured."""
    names = [name.strip() for name in text.split(",") if name.strip()] if text else []
    return names or None


def bad_configuration(process: str, error: BaseException) -> int:
    """Say why `process` cannot start on its configuration, on stderr; its exit code, 2."""
    print(f"{process}: bad configuration: {error}", file=sys.stderr, flush=True)
    return 2


def load_for(
    process: str, args: argparse.Namespace, flags: Iterable[str], **overrides: Any
) -> SystemConfig | None:
    """The configuration a process's `main` starts from, read the same way by each.

    The file of `args.config` (None: the embedded default), with the command-line values of
    `flags` (names of attributes of `args`; None: not given) and `overrides` on top, and
    the symbols of `args.symbols` (a `--symbols` text) unless `overrides` names them. A bad
    configuration (a ConfigError names the file, section and key) is said on stderr as
    `PROCESS: bad configuration: WHY` and gives None: the process then exits 2.
    """
    values = {name: getattr(args, name) for name in flags}
    values.setdefault("symbols", symbols_flag(getattr(args, "symbols", None)))
    values.update(overrides)
    try:
        return load_config(args.config, **values)
    except CONFIG_ERRORS as exc:
        bad_configuration(process, exc)
        return None
