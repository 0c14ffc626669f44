"""Start, watch and stop matchwire on one machine, or run one part of it.

    python run.py                      # every matcher, the gateway and the feed hub
    python run.py matcher --symbol BTC-USDT ...
    python run.py gateway | feedhub    # one component (sharded deployments)
    python run.py replay --data-dir data --symbol BTC-USDT [--csv trades.csv] [--verify]
    python run.py bench [core|zmq|rest|ws|all] [--quick]
    python run.py keys NAME --dir keys  # a CURVE key pair (docs/operations.md)

The supervisor only starts, watches and restarts (docs/operations.md, "The supervisor"):
a child that crashes after it was ready is started again at once (it recovers from its
journal); one that keeps failing before it is ready is retried with backoff a bounded
number of times, then run.py gives up (exit 1); a child that refuses to start (exit 2:
bad configuration, port in use, lock held, damaged journal) stops everything and run.py
exits 2 with its message. SIGINT/SIGTERM stop the front ends first, then the matchers
(which write a snapshot); a second signal kills them. Children die with the supervisor,
even when it is killed with SIGKILL.
"""

from __future__ import annotations

import argparse
import functools
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

from matcher.journal import FSYNC_POLICIES
from matcher.lifeline import exit_with_parent
from matcher.system import is_loopback, load_for

COMPONENTS = ("matcher", "gateway", "feedhub", "replay", "bench", "keys")
REPO = Path(__file__).resolve().parent

EXIT_REFUSED = 2  # a child that cannot run says why on stderr and exits 2: never retried
START_TRIES = 5  # consecutive failed starts (exit before ready) before run.py gives up
START_BACKOFF = 0.5  # seconds before retrying a failed start, doubled after each
CRASH_LIMIT = 10  # crashes of a ready child within CRASH_WINDOW seconds: give up
CRASH_WINDOW = 60.0
UNPROBED_READY_AFTER = 2.0  # a child with no TCP port to probe is ready after this long up
FRONT_END_GRACE = 10.0  # seconds a stopping gateway / feed hub gets before SIGKILL
MATCHER_GRACE = 30.0  # a stopping matcher writes its snapshot first
STDERR_TAIL = 20  # lines of a child's stderr kept to explain its exit
POLL_SECONDS = 0.2
PROBE_TIMEOUT = 1.0  # a readiness probe of a starting child (a loaded machine is slow)


def add_system_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML configuration (default: embedded)")
    parser.add_argument("--data-dir", help="journals and snapshots (default ./data)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, help="gateway port (default 8000)")
    parser.add_argument("--ws-port", type=int, help="feed hub port (default 8001)")
    parser.add_argument(
        "--zmq-port",
        type=int,
        help="first ZeroMQ port: matcher i binds zmq-port+2i and +2i+1 (5555)",
    )
    parser.add_argument("--symbols", help="comma-separated symbols (default BTC-USDT,ETH-USDT)")
    parser.add_argument("--fsync", choices=FSYNC_POLICIES, help="journal policy")


FLAGS_OF = {  # which of the system flags each component takes
    "matcher": ("config", "data_dir", "host", "zmq_port", "fsync"),
    "gateway": ("config", "host", "http_port", "ws_port", "zmq_port", "symbols"),
    "feedhub": ("config", "host", "ws_port", "zmq_port", "symbols"),
}


def system_flags(args: argparse.Namespace, component: str) -> list[str]:
    """The flags given to run.py that `component` takes, to pass on as given."""
    flags = []
    for name in FLAGS_OF[component]:
        value = getattr(args, name)
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


def probe_address(endpoint: str) -> tuple[str, int] | None:
    """The (host, port) to connect to for a `tcp://host:port` endpoint bound by a child;
    None for another transport or a port chosen at bind time."""
    if not endpoint.startswith("tcp://"):
        return None
    host, _, port = endpoint[len("tcp://") :].rpartition(":")
    return (host, int(port)) if port.isdigit() else None


def local_address(host: str, port: int) -> tuple[str, int]:
    """Where to reach a server bound to host:port from this machine."""
    host = host.strip("[]")
    wildcard = {"": "127.0.0.1", "*": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}
    return wildcard.get(host, host), port


def describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


HTTP_PROBE = b"GET / HTTP/1.0\r\nHost: run.py\r\n\r\n"


def answers(address: tuple[str, int], http: bool) -> bool:
    """Something accepts connections on `address` (and answers HTTP, if `http`: a front
    end binds its port before its app has started)."""
    try:
        with socket.create_connection(address, timeout=PROBE_TIMEOUT) as sock:
            if not http:
                return True
            sock.sendall(HTTP_PROBE)
            return sock.recv(5) == b"HTTP/"  # any status: the server is serving
    except OSError:
        return False


@dataclass
class Child:
    """One supervised process. It is *ready* once every port in `listens` answers: an
    exit before that is a failed start, after it a crash."""

    name: str
    argv: list[str]
    listens: list[tuple[str, int]]
    front_end: bool  # gateway or feed hub (HTTP servers): stopped before the matchers
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ready: bool = False
    starts: int = 0
    failed_starts: int = 0  # consecutive exits before ready
    restart_at: float | None = None
    crashes: deque[float] = field(default_factory=lambda: deque(maxlen=CRASH_LIMIT))
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL))
    partial: bytes = b""  # the unfinished last line of its stderr

    def start(self) -> None:
        # Children import the packages beside run.py even when it is not installed.
        path = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
        # Its own session: a Ctrl-C on the terminal reaches only run.py, which stops the
        # children in order. The lifeline makes it exit when run.py dies, even by SIGKILL.
        self.process = subprocess.Popen(
            [sys.executable, *self.argv],
            start_new_session=True,
            stderr=subprocess.PIPE,
            preexec_fn=functools.partial(exit_with_parent, os.getpid(), signal.SIGTERM),
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path},
        )
        assert self.process.stderr is not None
        os.set_blocking(self.process.stderr.fileno(), False)
        self.started_at = time.monotonic()
        self.ready = False
        self.restart_at = None
        self.starts += 1
        self.tail.clear()
        self.partial = b""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signum)

    def listening(self) -> bool:
        """Every port of this child answers (no port to probe: up long enough)."""
        if not self.listens:
            return time.monotonic() - self.started_at >= UNPROBED_READY_AFTER
        return all(answers(address, http=self.front_end) for address in self.listens)

    def took(self, data: bytes) -> None:
        """Keep the last lines of its stderr (already passed on to run.py's stderr)."""
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()[-4096:]
        self.tail.extend(line.decode(errors="replace") for line in lines)

    def last_lines(self) -> list[str]:
        lines = list(self.tail)
        if self.partial:
            lines.append(self.partial.decode(errors="replace"))
        return lines


class Supervisor:
    """Start every child, then one loop: pass their stderr on, notice readiness and
    exits, restart or give up; on a signal, stop the front ends, then the matchers."""

    def __init__(self, children: list[Child]) -> None:
        self.children = children
        self.should_exit = False
        self.force_exit = False
        self.outcome: int | None = None  # run.py's exit code once it gives up
        self.selector = selectors.DefaultSelector()

    def handle_signal(self, signum: int, frame: object) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self.handle_signal)
        signal.signal(signal.SIGTERM, self.handle_signal)
        for child in self.children:
            self.start(child)
        while not self.should_exit and self.outcome is None:
            self.pump(POLL_SECONDS)
            self.watch()
        self.stop()
        return 0 if self.outcome is None else self.outcome

    def start(self, child: Child) -> None:
        if child.starts:
            print(f"[run] restarting {child.name} (restart #{child.starts})", flush=True)
        child.start()
        assert child.process is not None and child.process.stderr is not None
        self.selector.register(child.process.stderr, selectors.EVENT_READ, child)

    # -- the loop ------------------------------------------------------------------

    def pump(self, timeout: float) -> None:
        """Wait up to `timeout` for output on the children's stderr and pass it on."""
        if not self.selector.get_map():
            time.sleep(timeout)
            return
        for key, _ in self.selector.select(timeout):
            self.read(cast(IO[bytes], key.fileobj), key.data)

    def read(self, pipe: IO[bytes], child: Child) -> None:
        """Pass on what is waiting in a child's stderr pipe; close it at its end."""
        fd = pipe.fileno()
        for _ in range(64):  # bounded: another child's output must not wait long
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            if not data:
                self.selector.unregister(pipe)
                pipe.close()
                return
            child.took(data)
            try:
                sys.stderr.buffer.write(data)
                sys.stderr.buffer.flush()
            except (OSError, ValueError):
                pass  # run.py's own stderr is gone: keep supervising regardless

    def drain(self, child: Child) -> None:
        """After a child's exit: read what it left in the pipe, then close it (a snapshot
        child of a matcher may still hold the pipe open, so never wait for its end)."""
        assert child.process is not None
        pipe = child.process.stderr
        if pipe is None or pipe.closed:
            return
        self.read(pipe, child)
        if not pipe.closed:
            self.selector.unregister(pipe)
            pipe.close()

    def watch(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.process is not None:
                code = child.process.poll()
                if code is None:
                    if not child.ready and child.listening():
                        child.ready = True
                        print(
                            f"[run] {child.name} ready (pid {child.process.pid}, "
                            f"{time.monotonic() - child.started_at:.2f}s after start)",
                            flush=True,
                        )
                    continue
                self.drain(child)
                self.exited(child, code, now)
            if self.outcome is not None:
                return
            if child.restart_at is not None and now >= child.restart_at:
                self.start(child)

    def exited(self, child: Child, code: int, now: float) -> None:
        """Decide what a child's exit means: give up, restart at once, or back off."""
        was_ready, up = child.ready, now - child.started_at
        child.process, child.ready = None, False
        if code == EXIT_REFUSED:
            when = f" on restart #{child.starts - 1}" if child.starts > 1 else ""
            self.give_up(child, EXIT_REFUSED, f"{child.name} refused to start{when} (exit 2)")
            return
        if was_ready:
            # It had been serving: recovery takes well under a second, so restart now.
            child.failed_starts = 0
            child.crashes.append(now)
            if len(child.crashes) == CRASH_LIMIT and now - child.crashes[0] < CRASH_WINDOW:
                self.give_up(
                    child,
                    1,
                    f"{child.name} crashed {CRASH_LIMIT} times within "
                    f"{CRASH_WINDOW:.0f}s (last: {describe(code)})",
                )
                return
            print(
                f"[run] {child.name} {describe(code)} after {up:.1f}s up; restarting now",
                flush=True,
            )
            child.restart_at = now
            return
        child.failed_starts += 1
        if child.failed_starts >= START_TRIES:
            self.give_up(
                child,
                1,
                f"{child.name} failed to start {START_TRIES} times in a "
                f"row (last: {describe(code)} before it was ready)",
            )
            return
        delay = START_BACKOFF * 2 ** (child.failed_starts - 1)
        print(
            f"[run] {child.name} {describe(code)} before it was ready (failed start "
            f"{child.failed_starts} of {START_TRIES}); restart in {delay:.1f}s",
            flush=True,
        )
        child.restart_at = now + delay

    def give_up(self, child: Child, code: int, reason: str) -> None:
        lines = child.last_lines()
        print(f"run.py: {reason}; stopping everything.", file=sys.stderr)
        if lines:
            print(f"run.py: the last lines {child.name} wrote on stderr:", file=sys.stderr)
            for line in lines:
                print(f"  {line}", file=sys.stderr)
        sys.stderr.flush()
        self.outcome = code

    # -- shutdown ------------------------------------------------------------------

    def stop(self) -> None:
        """Front ends first, so nothing new reaches a matcher that is writing its
        snapshot; each group is waited for (bounded) before the next is signalled."""
        front_ends = [child for child in self.children if child.front_end]
        matchers = [child for child in self.children if not child.front_end]
        for group, grace in ((front_ends, FRONT_END_GRACE), (matchers, MATCHER_GRACE)):
            self.stop_group(group, grace)
        print("[run] stopped", flush=True)

    def stop_group(self, group: list[Child], grace: float) -> None:
        running = [child for child in group if child.alive]
        for child in running:
            child.signal(signal.SIGKILL if self.force_exit else signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(child.alive for child in running):
            if self.force_exit or time.monotonic() >= deadline:
                for child in running:
                    if child.alive:
                        print(f"[run] {child.name} still running: killed", flush=True)
                        child.signal(signal.SIGKILL)
                break
            self.pump(0.05)
        for child in running:
            assert child.process is not None
            code = child.process.wait()
            self.drain(child)
            print(f"[run] {child.name} stopped ({describe(code)})", flush=True)


def run_system(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python run.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_system_flags(parser)
    parser.add_argument(
        "--apply-rules",
        action="store_true",
        help="matchers journal configured rules that differ from the journal's",
    )
    args = parser.parse_args(argv)
    config = load_for(
        "run.py", args, ("host", "http_port", "ws_port", "zmq_port", "data_dir", "fsync")
    )
    if config is None:
        return 2
    if not is_loopback(config.host) and not config.auth_enabled:
        print(
            f"run.py: refusing to bind {config.host} with auth off: configure api_keys "
            "or use a loopback host",
            file=sys.stderr,
        )
        return 2
    from matcher.curve import exposure

    for symbol, rules in config.symbols.items():  # the matchers' own check, before any start
        refusal = exposure(
            f"{symbol} matcher",
            [rules.order_endpoint, rules.feed_endpoint],
            config.curve is not None,
        )
        if refusal:
            print(f"run.py: {refusal}", file=sys.stderr)
            return 2
    children = [
        Child(
            f"matcher {symbol}",
            [
                "-m",
                "matcher.service",
                "--symbol",
                symbol,
                *system_flags(args, "matcher"),
                *(["--apply-rules"] if args.apply_rules else []),
            ],
            listens=[
                local_address(*address)
                for address in (
                    probe_address(rules.order_endpoint),
                    probe_address(rules.feed_endpoint),
                )
                if address is not None
            ],
            front_end=False,
        )
        for symbol, rules in config.symbols.items()
    ]
    children.append(
        Child(
            "feedhub",
            ["-m", "feedhub.server", *system_flags(args, "feedhub")],
            listens=[local_address(config.host, config.ws_port)],
            front_end=True,
        )
    )
    children.append(
        Child(
            "gateway",
            ["-m", "gateway.server", *system_flags(args, "gateway")],
            listens=[local_address(config.host, config.http_port)],
            front_end=True,
        )
    )
    host = config.host
    print(f"matchwire: {', '.join(config.symbols)}; data in {config.data_dir}", flush=True)
    print(f"  REST      http://{host}:{config.http_port}/", flush=True)
    print(f"  dashboard http://{host}:{config.http_port}/test", flush=True)
    print(
        f"  feeds     ws://{host}:{config.ws_port}/ws/market_data/<SYMBOL>, /ws/trades", flush=True
    )
    for symbol, rules in config.symbols.items():
        print(f"  {symbol}: orders {rules.order_endpoint}, feed {rules.feed_endpoint}", flush=True)
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
        print(
            "run.py bench: the benchmarks are not installed with the package; run "
            "`python run.py bench` from a clone of the repository",
            file=sys.stderr,
        )
        return 2
    from matcher import _build
    from tests.bench.suite import main as bench_main

    print(f"build: {_build.selection().describe()}", flush=True)
    return bench_main(argv)


def print_version() -> int:
    """`python run.py --version`: the version and which build of the matching core runs."""
    import importlib.metadata

    from matcher import _build

    try:
        version = importlib.metadata.version("matchwire")
    except importlib.metadata.PackageNotFoundError:
        version = "0.1.0 (not installed)"
    print(f"matchwire {version}, build: {_build.selection().describe()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:
        return print_version()
    if argv and argv[0] in COMPONENTS:
        return run_component(argv[0], argv[1:])
    return run_system(argv)


if __name__ == "__main__":
    raise SystemExit(main())
