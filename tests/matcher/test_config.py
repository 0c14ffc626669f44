"""The system file is strict (matcher/system.py, the symbol rules by matcher/config.py;
docs/operations.md, "Configuration (TOML)"): an unknown section or key, a value of the
wrong type, or an unknown symbol without its grid is refused naming it; and every
process that reads a configuration says so and exits 2.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from matcher.config import ConfigError
from matcher.system import SystemConfig, load_config, load_for
from tests.support import REPO, free_port

BAD = [  # (TOML text, what the message must name)
    ('[server]\nfsnyc = "off"\n', "unknown key 'fsnyc' in [server]"),
    ('[api_keys.k1]\naccount = "a"\nrate_limt = 5\n', "unknown key 'rate_limt' in [api_keys.k1]"),
    ('[symbols.BTC-USDT]\nticksize = "0.1"\n', "unknown key 'ticksize' in [symbols.BTC-USDT]"),
    ('fsync = "off"\n', "unknown key 'fsync' at the top level"),
    ('[serverr]\nhost = "127.0.0.1"\n', "unknown section 'serverr'"),
    ('[server]\nhttp_port = "8000"\n', "[server] http_port must be int, not str '8000'"),
    ("[server]\nws_port = true\n", "[server] ws_port must be int, not bool True"),
    ("[server]\nzmq_port = 70000\n", "zmq_port must be a port in 1..65535"),
    ("[server]\nsnapshot_every = nan\n", "snapshot_every must be int, not float nan"),
    ("[server]\nsnapshot_every = 0\n", "snapshot_every must be positive"),
    ('[server]\nprune_segments = "yes"\n', "prune_segments must be bool"),
    ("[server]\nhost = 1\n", "host must be str"),
    ('[server]\nfsync = "sometimes"\n', "fsync must be always, batch or off"),
    ("server = 1\n", "[server] must be a table"),
    ("[symbols.BTC-USDT]\ntick_size = nan\n", "tick_size: 'nan' must be a positive finite number"),
    ("[symbols.BTC-USDT]\nlot_size = true\n", "lot_size: True is not a decimal number"),
    ('[symbols.BTC-USDT]\nmaker_fee_rate = "1.5"\n', "maker_fee_rate must be in [0, 1)"),
    ("[symbols.BTC-USDT]\norder_endpoint = 5555\n", "order_endpoint must be a string"),
    ('[symbols.SOL-USDT]\ntick_size = "0.01"\n', "[symbols.SOL-USDT] must state lot_size"),
    ("[symbols.SOL-USDT]\n", "must state tick_size and lot_size"),
    ('[api_keys.k1]\naccount = "a"\nburst = 1.5\n', "burst must be a positive integer"),
    ('[api_keys.k1]\naccount = "a"\nrate_limit = nan\n', "rate_limit must be a positive number"),
    ("[api_keys.k1]\nrate_limit = 5\n", "account must be a non-empty string"),
    ("[server\n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "named"), BAD, ids=[named for _, named in BAD])
def test_a_bad_configuration_is_refused_naming_what_is_wrong(
    tmp_path: Path, text: str, named: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert named in str(caught.value) and str(path) in str(caught.value)


def test_every_system_config_field_is_a_server_key(tmp_path: Path) -> None:
    """One definition: a field added to SystemConfig (a connection cap, a timeout) is
    accepted in [server] with no second list to edit."""
    defaults = SystemConfig()
    lines = ["[server]"]
    for field in fields(SystemConfig):
        if field.name in ("symbols", "api_keys"):
            continue
        value = getattr(defaults, field.name)
        if isinstance(value, bool):
            lines.append(f"{field.name} = {'true' if value else 'false'}")
        elif isinstance(value, (int, float)):
            lines.append(f"{field.name} = {value!r}")
        elif value is not None:
            lines.append(f'{field.name} = "{value}"')
    path = tmp_path / "all.toml"
    path.write_text("\n".join(lines) + "\n")
    config = load_config(path)
    assert {name: getattr(config, name) for name in vars(defaults) if name != "symbols"} == {
        name: getattr(defaults, name) for name in vars(defaults) if name != "symbols"
    }


def test_a_built_in_table_overrides_only_the_keys_it_names(tmp_path: Path) -> None:
    path = tmp_path / "fees.toml"
    path.write_text(
        '[symbols.ETH-USDT]\nmaker_fee_rate = "0.0003"\n'
        '[symbols.SOL-USDT]\ntick_size = "0.001"\nlot_size = "0.01"\n'
    )
    config = load_config(path)
    eth, sol = config.symbols["ETH-USDT"], config.symbols["SOL-USDT"]
    assert (
        str(eth.lot_size),
        str(eth.max_price),
        str(eth.maker_fee_rate),
        str(eth.taker_fee_rate),
    ) == ("0.001", "1000000", "0.0003", "0.0002")
    assert (str(sol.tick_size), str(sol.lot_size), str(sol.min_quantity)) == (
        "0.001",
        "0.01",
        "0.01",
    )
    assert list(config.symbols) == ["ETH-USDT", "SOL-USDT"]  # the file says which symbols


def test_symbols_from_the_command_line() -> None:
    assert list(load_config(symbols=["ETH-USDT"]).symbols) == ["ETH-USDT"]
    with pytest.raises(ConfigError, match="symbol 'SOL-USDT' is not configured and not built in"):
        load_config(symbols=["SOL-USDT"])
    with pytest.raises(ConfigError, match="http_port must be a port"):
        load_config(http_port=0)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )


@pytest.mark.parametrize(
    "command",
    [
        ["run.py"],
        ["run.py", "matcher", "--symbol", "BTC-USDT"],
        ["run.py", "gateway"],
        ["run.py", "feedhub"],
        ["run.py", "replay", "--symbol", "BTC-USDT"],
    ],
    ids=["system", "matcher", "gateway", "feedhub", "replay"],
)
def test_every_process_exits_2_with_the_message(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "typo.toml"
    path.write_text(f"[server]\nhttp_port = {free_port()}\nrate_limt = 5\n")
    front_end = command[1:2] in (["gateway"], ["feedhub"])  # they keep no data folder
    data = [] if front_end else ["--data-dir", str(tmp_path / "data")]
    result = run(*command, "--config", str(path), *data)
    assert result.returncode == 2, result.stderr
    assert "unknown key 'rate_limt' in [server]" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_every_main_reads_its_flags_the_same_way(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(config=None, host=None, ws_port=9100, symbols=" ETH-USDT, ,")
    config = load_for("feedhub", args, ("host", "ws_port"))
    assert config is not None
    assert (config.host, config.ws_port, list(config.symbols)) == ("127.0.0.1", 9100, ["ETH-USDT"])
    assert capsys.readouterr().err == ""
    # A symbols override (the matcher's one --symbol) wins over --symbols.
    config = load_for("matcher", args, ("ws_port",), symbols=["BTC-USDT"])
    assert config is not None and list(config.symbols) == ["BTC-USDT"]
    args.ws_port = 0
    assert load_for("feedhub", args, ("ws_port",)) is None
    assert capsys.readouterr().err == (
        "feedhub: bad configuration: --ws_port must be a port in 1..65535, not 0\n"
    )


@pytest.mark.parametrize(
    ("command", "process"),
    [
        (["run.py"], "run.py"),
        (["run.py", "gateway"], "gateway"),
        (["run.py", "feedhub"], "feedhub"),
    ],
    ids=["system", "gateway", "feedhub"],
)
def test_every_symbols_flag_is_split_the_same_way(
    tmp_path: Path, command: list[str], process: str
) -> None:
    data = ["--data-dir", str(tmp_path / "data")] if process == "run.py" else []
    result = run(*command, "--symbols", "ETH-USDT, ,SOL-USDT ", *data)
    assert result.returncode == 2, result.stderr
    assert f"{process}: bad configuration: symbol 'SOL-USDT' is not configured" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_a_matcher_for_an_unknown_symbol_exits_2(tmp_path: Path) -> None:
    result = run("run.py", "matcher", "--symbol", "SOL-USDT", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "'SOL-USDT' is not configured and not built in" in result.stderr
    assert "Traceback" not in result.stderr
