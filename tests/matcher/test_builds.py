"""matcher/_build.py and setup.py: the compiled and the pure build agree, and the loader
uses a compiled build only when it was built from the source that runs.

Every test starts real Python processes (the choice is made once per process, at import).
Tests that need a compiled build skip without one, except under
MATCHWIRE_REQUIRE_COMPILED=1 (CI), where a missing build fails them.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from matcher import _build
from matcher.protocol import (
    BUY,
    CMD_AMEND,
    CMD_CANCEL,
    CMD_NEW_ORDER,
    CMD_NEW_STOP,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    SELL,
    STOP_LIMIT,
    STOP_LOSS,
    TAKE_PROFIT,
)
from tests.support import REPO

TIMEOUT = 180
PACKAGES = ("matcher", "clients", "gateway", "feedhub")


def matching_build() -> Path | None:
    """A folder holding a compiled build of the running source, wherever it is."""
    running = _build.source_hash()
    for folder in _build.candidate_dirs():
        info = _build.read_build_info(folder)
        if info is not None and info.get("source_hash") == running:
            return folder
    return None


def need_build() -> Path:
    folder = matching_build()
    if folder is None:
        if os.environ.get("MATCHWIRE_REQUIRE_COMPILED") == "1":
            pytest.fail("MATCHWIRE_REQUIRE_COMPILED=1 but no compiled build of this source")
        pytest.skip("no compiled build of this source: pip install . (with a C compiler)")
    return folder


def env(**switches: str) -> dict[str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MATCHWIRE_PURE_PYTHON", "MATCHWIRE_REQUIRE_COMPILED", "PYTHONPATH")
    }
    return {**clean, **switches}


def python(code: str, cwd: Path, *flags: str, **switches: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *flags, "-c", code],
        cwd=cwd,
        env=env(**switches),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


WHICH = (
    "import json, matcher.engine as e, matcher.book as b; from matcher import _build; "
    "print(json.dumps({'build': _build.build_name(), 'engine': e.Engine.__module__, "
    "'book': b.Order.__module__, 'file': e.__file__}))"
)


def which(cwd: Path, *flags: str, **switches: str) -> dict:
    result = python(WHICH, cwd, *flags, **switches)
    assert result.returncode == 0, result.stderr
    return {**json.loads(result.stdout.splitlines()[-1]), "stderr": result.stderr}


def clone(tmp_path: Path) -> Path:
    """A copy of the checkout's code, as a clone has it: no build inside."""
    root = tmp_path / "clone"
    for package in PACKAGES:
        shutil.copytree(
            REPO / package,
            root / package,
            ignore=shutil.ignore_patterns("__pycache__", "_compiled", "*.so"),
        )
    shutil.copy(REPO / "run.py", root / "run.py")
    return root


# -- the two builds agree -------------------------------------------------------------


def command_stream(count: int, seed: int = 14) -> list[list]:
    """Every command type, three accounts with every STP mode, stops that trigger."""
    rng = random.Random(seed)
    commands: list[list] = []
    accounts = ("alice", "bob", "anonymous")
    for seq in range(1, count + 1):
        ts = 1_700_000_000_000_000 + seq
        account = rng.choice(accounts)
        side = rng.choice((BUY, SELL))
        price = 1_000 + rng.randint(-20, 20)
        quantity = rng.randint(1, 50)
        roll = rng.random()
        if roll < 0.15 and seq > 1:
            commands.append([CMD_CANCEL, seq, ts, account, rng.randint(1, seq - 1)])
        elif roll < 0.22 and seq > 1:
            commands.append(
                [
                    CMD_AMEND,
                    seq,
                    ts,
                    account,
                    rng.randint(1, seq - 1),
                    rng.choice((None, quantity)),
                    rng.choice((None, price)),
                ]
            )
        elif roll < 0.30:
            order_type = rng.choice((STOP_LOSS, STOP_LIMIT, TAKE_PROFIT))
            limit = None if order_type == STOP_LOSS else price
            commands.append(
                [
                    CMD_NEW_STOP,
                    seq,
                    ts,
                    account,
                    side,
                    order_type,
                    price + rng.randint(-10, 10),
                    limit,
                    quantity,
                    rng.randint(0, 2),
                    rng.choice((None, f"s{seq % 50}")),
                ]
            )
        else:
            order_type = rng.choice((LIMIT, LIMIT, LIMIT, MARKET, IOC, FOK))
            commands.append(
                [
                    CMD_NEW_ORDER,
                    seq,
                    ts,
                    account,
                    side,
                    order_type,
                    GTC,
                    None if order_type == MARKET else price,
                    quantity,
                    rng.random() < 0.1,
                    rng.randint(0, 2),
                    rng.choice((None, f"c{seq % 50}")),
                ]
            )
    return commands


REPLAY = """
import hashlib, json, sys
from matcher import _build, codec
from matcher.engine import Engine
from matcher.protocol import CommandError
commands = json.load(open(sys.argv[1]))
engine = Engine(finished_window=500)
events = hashlib.sha256()
for command in commands:
    try:
        events.update(repr(engine.apply(tuple(command))).encode())
    except CommandError as exc:
        events.update(repr(exc.args).encode())
    if command[1] % 500 == 0:
        engine.check()
engine.check()
open(sys.argv[2], "wb").write(codec.encode_state(engine.export_state()))
other = Engine.from_state(codec.decode_state(open(sys.argv[3], "rb").read()), 500) \\
    if len(sys.argv) > 3 else engine
other.check()
print(json.dumps({"build": _build.build_name(), "hash": engine.state_hash(),
                  "events": events.hexdigest(), "other_hash": other.state_hash(),
                  "trades": engine.trade_id}))
"""


def replay(
    tmp_path: Path, stream: Path, state_out: Path, state_in: Path | None, **switches: str
) -> dict:
    args = [str(stream), str(state_out)] + ([str(state_in)] if state_in else [])
    result = subprocess.run(
        [sys.executable, "-c", REPLAY, *args],
        cwd=REPO,
        env=env(**switches),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_both_builds_give_the_same_events_state_hash_and_snapshots(tmp_path: Path) -> None:
    need_build()
    stream = tmp_path / "commands.json"
    stream.write_text(json.dumps(command_stream(6_000)))
    pure = replay(tmp_path, stream, tmp_path / "pure.state", None, MATCHWIRE_PURE_PYTHON="1")
    compiled = replay(
        tmp_path,
        stream,
        tmp_path / "compiled.state",
        tmp_path / "pure.state",
        MATCHWIRE_REQUIRE_COMPILED="1",
    )
    again = replay(
        tmp_path,
        stream,
        tmp_path / "pure2.state",
        tmp_path / "compiled.state",
        MATCHWIRE_PURE_PYTHON="1",
    )
    assert (pure["build"], compiled["build"]) == ("pure", "compiled")
    assert pure["trades"] > 500, "the stream should trade a lot"
    assert compiled["events"] == pure["events"]
    assert compiled["hash"] == pure["hash"]
    # A snapshot written by one build loads in the other, to the same state.
    assert compiled["other_hash"] == pure["hash"] and again["other_hash"] == compiled["hash"]
    assert (tmp_path / "pure.state").read_bytes() == (tmp_path / "compiled.state").read_bytes()


# -- the loader -----------------------------------------------------------------------


def test_pure_python_switch_runs_the_plain_files_even_under_require() -> None:
    ran = which(REPO, MATCHWIRE_PURE_PYTHON="1", MATCHWIRE_REQUIRE_COMPILED="1")
    assert ran["build"] == "pure"
    assert (ran["engine"], ran["book"]) == ("matcher.engine", "matcher.book")
    assert ran["file"].endswith("engine.py")


def test_a_clone_uses_the_installed_build_of_its_own_source(tmp_path: Path) -> None:
    """The README's `pip install . && python run.py`: the clone's folders come first on
    sys.path, the build is in site-packages; it is found and used."""
    need_build()
    root = clone(tmp_path)
    ran = which(root, MATCHWIRE_REQUIRE_COMPILED="1")
    assert ran["build"] == "compiled"
    assert (ran["engine"], ran["book"]) == ("matcher._compiled.engine", "matcher._compiled.book")
    assert not ran["file"].startswith(str(root)), "the clone holds no build"
    version = python("import run; run.main(['--version'])", root, MATCHWIRE_REQUIRE_COMPILED="1")
    assert "build: compiled" in version.stdout, version.stdout + version.stderr


def test_a_stale_build_is_never_used(tmp_path: Path) -> None:
    """An in-place build beside the clone's files, then an edit of the source: the build
    no longer matches (and neither does the installed one)."""
    root = clone(tmp_path)
    shutil.copytree(need_build(), root / "matcher" / "_compiled")
    fresh = which(root, MATCHWIRE_REQUIRE_COMPILED="1")
    assert fresh["build"] == "compiled" and fresh["file"].startswith(str(root))
    engine = root / "matcher" / "engine.py"
    engine.write_text(engine.read_text() + "\n# an edit after the build\n")
    stale = which(root)
    assert stale["build"] == "pure" and stale["engine"] == "matcher.engine"
    assert "StaleBuildWarning" in stale["stderr"] and "built from other sources" in stale["stderr"]
    refused = python(WHICH, root, MATCHWIRE_REQUIRE_COMPILED="1")
    assert refused.returncode != 0
    assert "ImportError: MATCHWIRE_REQUIRE_COMPILED=1" in refused.stderr
    assert "built from other sources" in refused.stderr


def test_require_compiled_without_any_build_is_an_import_error(tmp_path: Path) -> None:
    """No build beside the files and no installed matchwire (python -S hides
    site-packages; only the one dependency the core needs is put back)."""
    root = clone(tmp_path)
    import sortedcontainers

    deps = tmp_path / "deps"
    shutil.copytree(Path(sortedcontainers.__file__).parent, deps / "sortedcontainers")
    code = f"import sys; sys.path[:0] = [{str(root)!r}, {str(deps)!r}]; " + WHICH
    refused = python(code, tmp_path, "-S", MATCHWIRE_REQUIRE_COMPILED="1")
    assert refused.returncode != 0
    assert "MATCHWIRE_REQUIRE_COMPILED=1 but no compiled build found" in refused.stderr
    plain = python(code, tmp_path, "-S")
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["build"] == "pure" and not plain.stderr


GATEWAY_INFO = (
    "import json; from gateway.app import Gateway; "
    "from matcher.system import load_config; "
    "print(json.loads(Gateway(load_config(None)).info)['build'])"
)


def test_the_gateways_exchange_info_names_the_build() -> None:
    """GET / serves Gateway.info as built at start: its `build` field is the process's."""
    pure = python(GATEWAY_INFO, REPO, MATCHWIRE_PURE_PYTHON="1")
    assert pure.returncode == 0, pure.stderr
    assert pure.stdout.split() == ["pure"]
    need_build()
    compiled = python(GATEWAY_INFO, REPO, MATCHWIRE_REQUIRE_COMPILED="1")
    assert compiled.returncode == 0, compiled.stderr
    assert compiled.stdout.split() == ["compiled"]
