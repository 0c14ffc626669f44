"""The supervisor (run.py) with real processes and real signals: children die with it,
a child that refuses to start stops everything with exit 2, restarts after healthy runs
are immediate, failing starts are given up, and shutdown stops the front ends first."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from matcher.journal import Journal, segment_path
from tests.support import REPO, Child, free_port, free_port_run, http_ok, wait_until
from tests.test_system import child_pids, cmdline


class Ports:
    """Free loopback ports for one run.py: HTTP, WebSocket and the ZeroMQ run."""

    def __init__(self, symbols: int) -> None:
        self.http, self.ws = free_port(), free_port()
        self.zmq = free_port_run(2 * symbols, taken={self.http, self.ws})
        self.symbols = symbols

    def flags(self) -> list[str]:
        return [
            "--http-port",
            str(self.http),
            "--ws-port",
            str(self.ws),
            "--zmq-port",
            str(self.zmq),
        ]

    def all(self) -> list[int]:
        return [self.http, self.ws, *range(self.zmq, self.zmq + 2 * self.symbols)]


def run_py(tmp: Path, ports: Ports, *extra: str, env: dict[str, str] | None = None) -> Child:
    symbols = "BTC-USDT,ETH-USDT" if ports.symbols == 2 else "BTC-USDT"
    return Child(
        ["run.py", "--data-dir", str(tmp / "data"), *ports.flags(), "--symbols", symbols, *extra],
        tmp / "run.log",
        env=env,
    )


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True
    return fields[0] == "Z"


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def processes_using(marker: str) -> list[int]:
    """Live processes whose command line names `marker` (a test's own data folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if (
            entry.name.isdigit()
            and marker in cmdline(int(entry.name))
            and not gone(int(entry.name))
        ):
            found.append(int(entry.name))
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def leftovers(tmp_path: Path) -> Iterator[None]:
    """Whatever a failing test leaves running under its data folder is killed after it."""
    yield
    kill_all(processes_using(str(tmp_path / "data")))


def wait_healthy(child: Child, ports: Ports) -> None:
    try:
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{ports.http}/health"), timeout=60, interval=0.2
        )
    except TimeoutError:
        raise AssertionError(f"run.py did not become healthy:\n{child.log()[-4000:]}") from None


# -- item: children exit with the supervisor ------------------------------------------


def test_children_exit_when_the_supervisor_is_killed(tmp_path: Path, leftovers: None) -> None:
    ports = Ports(2)
    child = run_py(tmp_path, ports).start()
    wait_healthy(child, ports)
    assert child.process is not None
    children = child_pids(child.process.pid)
    assert len(children) == 4, [cmdline(pid) for pid in children]
    child.kill()  # SIGKILL: no handler, no clean-up in run.py
    wait_until(lambda: all(map(gone, children)), timeout=30)
    wait_until(lambda: not any(map(listening, ports.all())), timeout=30)
    # A new supervisor on the same ports and data starts at once.
    again = Child(child.args[1:], tmp_path / "again.log").start()
    try:
        wait_healthy(again, ports)
    finally:
        assert again.stop(timeout=60) == 0


SNAPSHOT_CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from matcher.system import load_config
    from matcher.service import MatcherService

    config = load_config(symbols=["BTC-USDT"], data_dir=sys.argv[1])
    service = MatcherService(config.symbols["BTC-USDT"], Path(sys.argv[1]))
    # A snapshot that takes as long as the test needs (a book of millions of orders).
    service._write_snapshot = lambda writer="": time.sleep(600)
    service.start_snapshot()
    print(service.snapshot_child[0], flush=True)
    time.sleep(600)
""")


def test_a_matcher_s_snapshot_child_exits_with_the_matcher(tmp_path: Path) -> None:
    matcher = subprocess.Popen(
        [sys.executable, "-c", SNAPSHOT_CHILD, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert matcher.stdout is not None
        snapshot_child = int(matcher.stdout.readline())
        assert not gone(snapshot_child)
        matcher.kill()
        matcher.wait(timeout=10)
        try:
            wait_until(lambda: gone(snapshot_child), timeout=30)
        finally:
            kill_all([snapshot_child])
    finally:
        matcher.kill()
        matcher.wait(timeout=10)


# -- item: a child that refuses to start stops everything ------------------------------


def assert_refused(child: Child, tmp_path: Path, *expected: str) -> str:
    assert child.process is not None
    try:
        code = child.process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"run.py still running:\n{child.log()[-3000:]}") from None
    log = child.log()
    assert code == 2, log[-3000:]
    assert "refused to start (exit 2)" in log, log[-3000:]
    for text in expected:
        assert text in log, log[-3000:]
    assert processes_using(str(tmp_path / "data")) == [], "children left running"
    return log


@pytest.mark.parametrize("which", ["http", "ws", "router", "pub"])
def test_a_busy_port_stops_everything_with_exit_2_naming_it(
    tmp_path: Path, leftovers: None, which: str
) -> None:
    ports = Ports(2)
    busy = {"http": ports.http, "ws": ports.ws, "router": ports.zmq + 2, "pub": ports.zmq + 1}[
        which
    ]
    name = {
        "http": "gateway",
        "ws": "feedhub",
        "router": "matcher ETH-USDT",
        "pub": "matcher BTC-USDT",
    }[which]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", busy))
        holder.listen()
        child = run_py(tmp_path, ports).start()
        log = assert_refused(
            child, tmp_path, f"{name} refused", f"127.0.0.1:{busy}", "Address already in use"
        )
    assert "restarting" not in log


def test_a_damaged_journal_stops_everything_with_exit_2_naming_the_file(
    tmp_path: Path, leftovers: None
) -> None:
    folder = tmp_path / "data" / "BTC-USDT" / "journal"
    journal = Journal(folder, fsync="off")
    journal.open()
    for seq in (1, 2):
        journal.append(seq, b"\x93\x01\x02\x03")
    journal.commit()
    journal.close()
    segment = segment_path(folder, 1)
    data = bytearray(segment.read_bytes())
    data[10] ^= 0xFF  # inside the first record, which a valid one follows
    segment.write_bytes(bytes(data))
    child = run_py(tmp_path, Ports(2)).start()
    assert_refused(child, tmp_path, "matcher BTC-USDT refused", "journal corrupt", segment.name)


# -- item: restarts after healthy runs, bounded retries of failing starts ---------------


def test_a_matcher_that_had_been_up_is_restarted_at_once_each_time(
    tmp_path: Path, leftovers: None
) -> None:
    ports = Ports(1)
    child = run_py(tmp_path, ports).start()
    assert child.process is not None
    supervisor = child.process.pid

    def matcher() -> int | None:
        pids = [pid for pid in child_pids(supervisor) if "matcher.service" in cmdline(pid)]
        return pids[0] if pids else None

    try:
        killed: int | None = None
        for _ in range(4):
            # Up again: a new matcher process, and the gateway reaches it.
            wait_until(
                lambda killed=killed: (
                    matcher() not in (None, killed)
                    and http_ok(f"http://127.0.0.1:{ports.http}/health")
                ),
                timeout=60,
            )
            killed = matcher()
            assert killed is not None
            os.kill(killed, signal.SIGKILL)
        wait_until(
            lambda: (
                matcher() not in (None, killed) and http_ok(f"http://127.0.0.1:{ports.http}/health")
            ),
            timeout=60,
        )
        log = child.log()
        assert "restart in" not in log, log[-3000:]  # no backoff for a child that had been up
        assert log.count("matcher BTC-USDT killed by SIGKILL after") == 4, log[-3000:]
        assert log.count("restarting now") == 4
    finally:
        assert child.stop(timeout=60) == 0


CRASH_AT_START = """
import os, sys
if "feedhub.server" in sys.orig_argv:
    print("feedhub: crashing at start on purpose", file=sys.stderr, flush=True)
    os._exit(1)
"""


def test_a_child_that_keeps_failing_at_start_is_given_up(tmp_path: Path, leftovers: None) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASH_AT_START)
    path = os.pathsep.join(filter(None, (str(hook), os.environ.get("PYTHONPATH"))))
    child = run_py(tmp_path, Ports(1), env={"PYTHONPATH": path}).start()
    assert child.process is not None
    try:
        code = child.process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"run.py still running:\n{child.log()[-3000:]}") from None
    log = child.log()
    assert code == 1, log[-3000:]
    assert "feedhub failed to start 5 times in a row (last: exit 1 before it was ready)" in log
    assert "  feedhub: crashing at start on purpose" in log  # its last stderr line, quoted
    delays = [
        line.rsplit("restart in ", 1)[1]
        for line in log.splitlines()
        if line.startswith("[run] feedhub exit 1 before it was ready")
    ]
    assert delays == ["0.5s", "1.0s", "2.0s", "4.0s"], log[-3000:]
    assert processes_using(str(tmp_path / "data")) == []


# -- item: shutdown order ----------------------------------------------------------------


def test_sigterm_stops_the_front_ends_before_the_matchers(tmp_path: Path, leftovers: None) -> None:
    ports = Ports(2)
    child = run_py(tmp_path, ports).start()
    wait_healthy(child, ports)
    assert child.stop(timeout=60) == 0
    lines = child.log().splitlines()

    def where(text: str) -> int:
        found = [i for i, line in enumerate(lines) if text in line]
        assert len(found) == 1, f"{text!r} logged {len(found)} times:\n" + "\n".join(lines[-30:])
        return found[0]

    matchers_gone = min(
        where(f"matchwire.matcher INFO {symbol} stopped at seq")
        for symbol in ("BTC-USDT", "ETH-USDT")
    )
    assert where("matchwire.gateway INFO gateway stopped") < matchers_gone, "\n".join(lines[-30:])
    assert where("matchwire.feedhub INFO feed hub stopped") < matchers_gone
