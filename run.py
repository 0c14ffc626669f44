"""Start, watch and stop matchwire on one machine, or run one part of it.

    python run.py                      # every matcher, the gateway and the feed hub
    python run.py matcher --symbol BTC-USDT ...
    python run.py gateway | feedhub    # one component (sharded deployments)
    python run.py replay --data-dir data --symbol BTC-USDT [--csv trades.csv] [--verify]
    python run.py bench [core|zmq|rest|ws|all] [--quick]
    python run.py keys NAME --dir keys  # a CURVE key pair (docs/operations.md)

The supervisor only starts, watches and restarts: a child that dies is started again
with backoff (it recovers from its journal); SIGINT/SIGTERM stop every child cleanly
(matchers write a snapshot), a second signal kills them.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from matcher.config import SystemConfig, is_loopback, load_config

COMPONENTS = ("matcher", "gateway", "feedhub", "replay", "bench", "keys")
REPO = Path(__file__).resolve().parent
RESTART_BACKOFF_MAX = 10.0
STABLE_AFTER = 30.0  # a child up this long has its backoff reset


def add_system_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML configuration (default: embedded)")
    parser.add_argument("--data-dir", help="journals and snapshots (default ./data)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, help="gateway port (default 8000)")
    parser.add_argument("--ws-port", type=int, help="feed hub port (default 8001)")
    parser.add_argument("--zmq-port", type=int,
                        help="first ZeroMQ port: matcher i binds zmq-port+2i and +2i+1 (5555)")
    parser.add_argument("--symbols", help="comma-separated symbols (default BTC-USDT,ETH-USDT)")
    parser.add_argument("--fsync", choices=("always", "batch", "off"), help="journal policy")


FLAGS_OF = {  # which of the system flags each component takes
    "matcher": ("config", "data_dir", "host", "zmq_port", "fsync"),
    "gateway": ("config", "data_dir", "host", "http_port", "ws_port", "zmq_port", "symbols"),
    "feedhub": ("config", "data_dir", "host", "ws_port", "zmq_port", "symbols"),
}


def system_flags(args: argparse.Namespace, component: str) -> list[str]:
    """The flags given to run.py that `component` takes, to pass on as given."""
    flags = []
    for name in FLAGS_OF[component]:
        value = getattr(args, name)
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


def config_from(args: argparse.Namespace) -> SystemConfig:
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
    return load_config(args.config, host=args.host, http_port=args.http_port,
                       ws_port=args.ws_port, zmq_port=args.zmq_port, data_dir=args.data_dir,
                       fsync=args.fsync, symbols=symbols)


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = 0.5
    restart_at: float = 0.0
    restarts: int = 0
    history: list[int] = field(default_factory=list)

    def start(self) -> None:
        # Children import the packages beside run.py even when it is not installed.
        path = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
        self.process = subprocess.Popen(
            [sys.executable, *self.argv], start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path},
        )
        self.started_at = time.monotonic()

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)


class Supervisor:
    def __init__(self, children: list[Child]) -> None:
        self.children = children
        self.should_exit = False
        self.force_exit = False

    def handle_signal(self, signum: int, frame: object) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self.handle_signal)
        signal.signal(signal.SIGTERM, self.handle_signal)
        for child in self.children:
            child.start()
        while not self.should_exit:
            self.watch()
            time.sleep(0.2)
        return self.stop()

    def watch(self) -> None:
        now = time.monotonic()
        for child in self.children:
            process = child.process
            if process is None:
                if now >= child.restart_at:
                    print(f"[run] restarting {child.name} (restart #{child.restarts})", flush=True)
                    child.start()
                continue
            code = process.poll()
            if code is None:
                if now - child.started_at > STABLE_AFTER:
                    child.backoff = 0.5
                continue
            child.history.append(code)
            child.restarts += 1
            child.process = None
            child.restart_at = now + child.backoff
            print(f"[run] {child.name} exited with {code}; restart in {child.backoff:.1f}s",
                  flush=True)
            child.backoff = min(child.backoff * 2, RESTART_BACKOFF_MAX)

    def stop(self) -> int:
        # Front ends first, so nothing new reaches a matcher that is writing its snapshot.
        for child in reversed(self.children):
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in reversed(self.children):
            process = child.process
            if process is None:
                continue
            while process.poll() is None and time.monotonic() < deadline and not self.force_exit:
                time.sleep(0.05)
            if process.poll() is None:
                process.kill()
                process.wait()
        print("[run] stopped", flush=True)
        return 0


def run_system(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python run.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_system_flags(parser)
    args = parser.parse_args(argv)
    try:
        config = config_from(args)
    except (OSError, ValueError, KeyError) as exc:
        print(f"run.py: bad configuration: {exc}", file=sys.stderr)
        return 2
    if not is_loopback(config.host) and not config.auth_enabled:
        print(f"run.py: refusing to bind {config.host} with auth off: configure api_keys "
              "or use a loopback host", file=sys.stderr)
        return 2
    from matcher.curve import exposure

    for symbol, rules in config.symbols.items():  # the matchers' own check, before any start
        refusal = exposure(f"{symbol} matcher", [rules.order_endpoint, rules.feed_endpoint],
                           config.curve is not None)
        if refusal:
            print(f"run.py: {refusal}", file=sys.stderr)
            return 2
    children = [
        Child(f"matcher {symbol}",
              ["-m", "matcher.service", "--symbol", symbol, *system_flags(args, "matcher")])
        for symbol in config.symbols
    ]
    children.append(Child("feedhub", ["-m", "feedhub.server", *system_flags(args, "feedhub")]))
    children.append(Child("gateway", ["-m", "gateway.server", *system_flags(args, "gateway")]))
    host = config.host
    print(f"matchwire: {', '.join(config.symbols)}; data in {config.data_dir}", flush=True)
    print(f"  REST      http://{host}:{config.http_port}/", flush=True)
    print(f"  dashboard http://{host}:{config.http_port}/test", flush=True)
    print(f"  feeds     ws://{host}:{config.ws_port}/ws/market_data/<SYMBOL>, /ws/trades",
          flush=True)
    for symbol, rules in config.symbols.items():
        print(f"  {symbol}: orders {rules.order_endpoint}, feed {rules.feed_endpoint}",
              flush=True)
    print("Ctrl-C stops everything.", flush=True)
    return Supervisor(children).run()


ENTRY_POINTS = {  # component -> module whose main(argv) runs it
    "matcher": "matcher.service",
    "gateway": "gateway.server",
    "feedhub": "feedhub.server",
    "replay": "matcher.replay",
}


def run_component(name: str, argv: list[str]) -> int:
    import importlib

    if name == "bench":
        return run_benchmarks(argv)
    if name == "keys":
        return make_keys(argv)
    return int(importlib.import_module(ENTRY_POINTS[name]).main(argv) or 0)


def make_keys(argv: list[str]) -> int:
    """`run.py keys NAME --dir D`: a CURVE key pair, D/NAME.key (public, to hand out) and
    D/NAME.key_secret (the pair: keep it on its host), as zmq.auth writes them."""
    import zmq.auth

    parser = argparse.ArgumentParser(prog="run.py keys", description=make_keys.__doc__)
    parser.add_argument("name", help="the key's name: matcher, gateway, feedhub, an account")
    parser.add_argument("--dir", type=Path, default=Path("keys"), help="folder (default keys)")
    args = parser.parse_args(argv)
    if not args.name or "/" in args.name or args.name.startswith("."):
        print(f"run.py keys: bad name {args.name!r}", file=sys.stderr)
        return 2
    secret = args.dir / f"{args.name}.key_secret"
    if secret.exists():
        print(f"run.py keys: {secret} exists: not overwritten", file=sys.stderr)
        return 2
    args.dir.mkdir(parents=True, exist_ok=True)
    public_file, secret_file = zmq.auth.create_certificates(args.dir, args.name)
    os.chmod(secret_file, 0o600)
    print(f"{public_file}\n{secret_file}")
    return 0


def run_benchmarks(argv: list[str]) -> int:
    """The benchmarks live in the clone's tests/bench/, not in the installed packages."""
    if not (Path(__file__).resolve().parent / "tests" / "bench" / "suite.py").exists():
        print("run.py bench: the benchmarks are not installed with the package; run "
              "`python run.py bench` from a clone of the repository", file=sys.stderr)
        return 2
    from tests.bench.suite import main as bench_main

    return bench_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMPONENTS:
        return run_component(argv[0], argv[1:])
    return run_system(argv)


if __name__ == "__main__":
    raise SystemExit(main())
