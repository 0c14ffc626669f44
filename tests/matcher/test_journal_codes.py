"""The journal's type codes are its only version (docs/journal.md, "No format version").

The codes of matcher/protocol.py are held to the table of docs/journal.md both ways, and
to the layouts of the protocol module's docstring, so a code renumbered, added or
reshaped in one place and not the others fails here. A record of a code this matcher does
not know (a journal written by a newer one) is refused, by the engine, by a starting
matcher and by `replay`, never misread.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import matcher.protocol as protocol
from matcher import codec
from matcher.journal import Journal
from matcher.protocol import BUY, CMD_NEW_ORDER, GTC, LIMIT, STP_CANCEL_NEWEST, Code, CommandError
from matcher.rules import rules_command, rules_of
from matcher.service import journal_dir, new_engine
from matcher.system import load_config
from matcher.units import CachedUnits
from tests.matcher.test_service import SYMBOL, MatcherProcess
from tests.support import REPO, run_replay

JOURNAL_DOC = REPO / "docs" / "journal.md"
TS = 1_700_000_000_000_000


def protocol_codes() -> dict[str, int]:
    """NAME -> code of every CMD_ constant of matcher/protocol.py."""
    return {
        name.removeprefix("CMD_"): value
        for name, value in vars(protocol).items()
        if name.startswith("CMD_") and isinstance(value, int)
    }


def doc_table() -> dict[str, tuple[int, list[str]]]:
    """NAME -> (code, fields after the code) of docs/journal.md's "Commands as journaled"."""
    text = JOURNAL_DOC.read_text()
    block = re.search(r"Commands as journaled[^\n]*\n+```\n(.*?)```", text, re.S)
    assert block, "docs/journal.md has no 'Commands as journaled' block"
    table: dict[str, tuple[int, list[str]]] = {}
    for line in block.group(1).splitlines():
        row = re.fullmatch(r"\[(\d+), ([^\]]*)\]\s+([a-z_ ]+?)(?: \(.*\))?", line.strip())
        assert row, f"docs/journal.md: not a record line: {line!r}"
        name = row.group(3).replace(" ", "_").upper()
        assert name not in table, f"docs/journal.md names {name} twice"
        table[name] = (int(row.group(1)), [f.strip() for f in row.group(2).split(",")])
    return table


def docstring_layouts() -> dict[str, list[str]]:
    """NAME -> fields after the code, from the command tuples of protocol's docstring."""
    assert protocol.__doc__
    return {
        name.removeprefix("CMD_"): [f.strip() for f in body.split(",")]
        for name, body in re.findall(r"\((CMD_\w+),\s*(.*?)\)", protocol.__doc__, re.S)
    }


def test_the_codes_are_the_documented_ones_both_ways() -> None:
    codes = protocol_codes()
    assert len(set(codes.values())) == len(codes), f"two commands share a code: {codes}"
    documented = {name: code for name, (code, _) in doc_table().items()}
    undocumented = {name: code for name, code in codes.items() if documented.get(name) != code}
    unknown = {name: code for name, code in documented.items() if codes.get(name) != code}
    assert not undocumented, f"codes missing or numbered otherwise in the doc: {undocumented}"
    assert not unknown, f"the doc lists codes matcher/protocol.py does not: {unknown}"


def test_the_documented_layouts_are_the_protocol_modules() -> None:
    layouts = {name: fields for name, (_, fields) in doc_table().items()}
    assert layouts == docstring_layouts()
    assert set(layouts) == set(protocol_codes())


def unknown_code() -> int:
    """The code a newer matcher would give its next command."""
    return max(protocol_codes().values()) + 1


def write_journal_with_unknown_record(data_dir: Path) -> int:
    """A real journal (rules, one order, a record of an unknown code); its seq is 3."""
    config = load_config(None, symbols=[SYMBOL]).symbols[SYMBOL]
    journal = Journal(journal_dir(data_dir, SYMBOL), fsync="always")
    journal.open()
    commands = [
        rules_command(1, TS, rules_of(config)),
        (
            CMD_NEW_ORDER,
            2,
            TS + 1,
            "alice",
            BUY,
            LIMIT,
            GTC,
            100,
            1,
            False,
            STP_CANCEL_NEWEST,
            None,
        ),
        (unknown_code(), 3, TS + 2, "alice", BUY),
    ]
    for command in commands:
        journal.append(command[1], codec.encode_command(command))
    journal.commit()
    journal.close()
    return 3


def test_the_engine_refuses_a_record_of_an_unknown_code(tmp_path: Path) -> None:
    seq = write_journal_with_unknown_record(tmp_path)
    engine = new_engine(CachedUnits(load_config(None, symbols=[SYMBOL]).symbols[SYMBOL]))
    *known, unknown = map(codec.decode_command, Journal(journal_dir(tmp_path, SYMBOL)).records())
    for command in known:
        engine.apply(command)
    with pytest.raises(CommandError, match=f"unknown command type {unknown_code()}") as refused:
        engine.apply(unknown)
    assert refused.value.code == Code.UNKNOWN_OP
    assert engine.seq == seq - 1, "a refused record changes nothing"


def test_a_record_of_an_unknown_code_is_refused_by_replay(tmp_path: Path) -> None:
    seq = write_journal_with_unknown_record(tmp_path)
    for extra in ([], ["--verify"], ["--csv", str(tmp_path / "trades.csv")]):
        done: subprocess.CompletedProcess[str] = run_replay(SYMBOL, "--data-dir", tmp_path, *extra)
        assert done.returncode == 1, (extra, done.stdout, done.stderr)
        assert f"replay FAILED: record {seq} was refused on replay: unknown_op" in done.stderr


def test_a_matcher_refuses_to_start_on_a_record_of_an_unknown_code(tmp_path: Path) -> None:
    seq = write_journal_with_unknown_record(tmp_path / "data")
    before = {path: path.read_bytes() for path in (tmp_path / "data").rglob("*.log")}
    matcher = MatcherProcess(tmp_path / "data", tmp_path / "matcher.log").start(wait=False)
    assert matcher.child is not None and matcher.child.process is not None
    try:
        code = matcher.child.process.wait(timeout=30)
    finally:
        matcher.kill()
    log = matcher.log()
    assert code == 2, log
    assert f"record {seq} was refused on replay: unknown_op" in log, log
    after = {path: path.read_bytes() for path in (tmp_path / "data").rglob("*.log")}
    assert after == before, "a refused start must leave the journal as it was"
