"""The gateway process (gateway/server.py): flags, the loopback rule, clean stops."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import BTC, GatewaySystem
from tests.support import REPO, Child, free_port, wait_for_port


def run_gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.server", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_refuses_a_public_host_with_auth_off(tmp_path: Path) -> None:
    config = tmp_path / "open.toml"
    config.write_text(f"[server]\nhttp_port = {free_port()}\n")
    result = run_gateway("--config", str(config), "--host", "0.0.0.0")
    assert result.returncode == 2
    assert "non-loopback" in result.stderr


def test_refuses_a_bad_configuration(tmp_path: Path) -> None:
    missing = run_gateway("--config", str(tmp_path / "missing.toml"))
    assert missing.returncode == 2 and "bad configuration" in missing.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[symbols.X]\ntick_size = "-1"\n')
    assert run_gateway("--config", str(bad)).returncode == 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_flags_override_the_config_and_a_signal_stops_it_cleanly(
    system: GatewaySystem, tmp_path: Path, signum: int
) -> None:
    port = free_port()
    child = Child(
        [
            "-m",
            "gateway.server",
            "--config",
            str(system.config_path),
            "--http-port",
            str(port),
            "--symbols",
            BTC,
        ],
        tmp_path / "gateway.log",
    ).start()
    try:
        wait_for_port(port)
        base = f"http://127.0.0.1:{port}"
        assert list(httpx.get(base + "/").json()["symbols"]) == [BTC]
        assert httpx.get(base + "/bbo/BTC-USDT").status_code == 200
        assert httpx.get(base + "/bbo/ETH-USDT").status_code == 404  # not routed here
    finally:
        assert child.process is not None
        child.process.send_signal(signum)
        returncode = child.process.wait(timeout=10)
    assert returncode == 0, child.log()
    assert "Traceback" not in child.log()


def test_the_matcher_timeout_comes_from_the_config_or_the_flag(tmp_path: Path) -> None:
    """[server] matcher_timeout sets each command's deadline; --matcher-timeout overrides
    it. Nothing listens on the matcher's endpoint, so every request times out."""
    config = tmp_path / "timeout.toml"
    config.write_text(f"[server]\nzmq_port = {free_port()}\nmatcher_timeout = 0.2\n")
    for flags, shown in (((), "0.2s"), (("--matcher-timeout", "0.3"), "0.3s")):
        port = free_port()
        child = Child(
            ["-m", "gateway.server", "--config", str(config), "--http-port", str(port), *flags],
            tmp_path / "gateway.log",
        ).start()
        try:
            wait_for_port(port)
            response = httpx.get(f"http://127.0.0.1:{port}/bbo/BTC-USDT", timeout=30)
            assert response.status_code == 503
            assert f"in {shown}" in response.json()["error"]["message"]
        finally:
            child.stop()


@pytest.mark.parametrize(
    "setting",
    [
        "matcher_timeout = 0",
        "matcher_timeout = -1",
        'matcher_timeout = "soon"',
        "matcher_timeout = nan",
    ],
)
def test_refuses_a_bad_matcher_timeout(tmp_path: Path, setting: str) -> None:
    config = tmp_path / "bad-timeout.toml"
    config.write_text(f"[server]\n{setting}\n")
    result = run_gateway("--config", str(config))
    assert result.returncode == 2 and "bad configuration" in result.stderr
    assert "matcher_timeout" in result.stderr or "soon" in result.stderr
    flag = run_gateway("--matcher-timeout", "0")
    assert flag.returncode == 2 and "matcher_timeout" in flag.stderr
