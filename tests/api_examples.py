"""docs/api.md's examples, run in the order printed against real systems.

Every ```console block of the page is a list of commands (`$ ...`, continued by a
trailing backslash) each followed by the output it printed. They run with bash, one
after another, against the system the page says (an HTML comment, invisible to readers,
switches it for the blocks that follow):

    <!-- examples: main -->           run.py with matcher metrics on (the default)
    <!-- examples: gateway-alone -->  run.py gateway alone: no matcher, no feed hub
    <!-- examples: auth -->           run.py with the page's ```toml block of API keys

The systems run on free loopback ports; the page's ports (8000, 8001, 5555..., 9100...)
are swapped for the real ones in the commands and back in the outputs, so an output is
compared as printed. Only what differs from run to run by nature is masked (MASKS).

`python -m tests.api_examples --write` runs every example and writes the real outputs
into the page (regenerating it after an API change); tests/test_api_examples.py checks
that the page reproduces.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import Child, free_port, free_port_run, wait_for_port, wait_until

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "api.md"
SYSTEMS = ("main", "gateway-alone", "auth")
MARKER = re.compile(r"^<!-- examples: ([\w-]+) -->$")
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
ADDRESS = re.compile(r"127\.0\.0\.1:(\d+)")

# The ports the page shows: the gateway, the feed hub, BTC-USDT's and ETH-USDT's matcher
# (ROUTER, PUB), their metrics.
DOC_HTTP, DOC_WS, DOC_ZMQ, DOC_METRICS = 8000, 8001, 5555, 9100

# What is masked in both the page and the real output before they are compared, and
# why: nothing else may differ.
MASKS: tuple[tuple[str, str, str], ...] = (
    (
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z",
        "<timestamp>",
        "the clock: orders, trades, books, candles' open_time, the ticker",
    ),
    (
        r'"build": ?"(compiled|pure)"',
        '"build": "<build>"',
        "which build of the matching core runs (docs/architecture.md, Two builds)",
    ),
    (r'"version": ?"[^"]*"', '"version": "<version>"', "the installed package's version"),
    (r"(HTTP \d{3}) +\d+\.\d+s", r"\1 <seconds>", "curl's %{time_total}"),
    (r"retry in \d+\.\d+s", "retry in <seconds>", "how much of the rate-limit bucket is left"),
)
_MASKS = [(re.compile(pattern), replacement) for pattern, replacement, _ in MASKS]


@dataclass
class Example:
    system: str
    command: str  # as printed, without the "$ "
    shown: list[str]  # the output lines as printed (the block's indentation removed)
    line: int  # of the command in the page, from 1
    output_span: tuple[int, int]  # the page's lines [start, end) holding `shown`
    indent: str


def parse(text: str) -> list[Example]:
    """The console examples of the page, in order, each with its system."""
    lines = text.splitlines()
    examples: list[Example] = []
    system = "main"
    index = 0
    while index < len(lines):
        marker = MARKER.match(lines[index].strip())
        if marker:
            if marker.group(1) not in SYSTEMS:
                raise ValueError(f"line {index + 1}: unknown example system {marker.group(1)!r}")
            system = marker.group(1)
        fence = FENCE.match(lines[index])
        index += 1
        if not fence:
            continue
        indent, language = fence.groups()
        end = index
        while not FENCE.match(lines[end]):
            end += 1
        if language == "console":
            examples.extend(_commands(lines, index, end, indent, system))
        index = end + 1
    return examples


def _commands(
    lines: list[str], start: int, end: int, indent: str, system: str
) -> Iterator[Example]:
    index = start
    while index < end:
        text = lines[index].removeprefix(indent)
        if not text.startswith("$ "):
            raise ValueError(f"docs/api.md line {index + 1}: output without a command")
        first = index
        command = [text[2:]]
        while command[-1].endswith("\\"):
            index += 1
            command.append(lines[index].removeprefix(indent))
        index += 1
        output_start = index
        while index < end and not lines[index].removeprefix(indent).startswith("$ "):
            index += 1
        yield Example(
            system,
            "\n".join(command),
            [line.removeprefix(indent) for line in lines[output_start:index]],
            first + 1,
            (output_start, index),
            indent,
        )


def masked(lines: list[str]) -> list[str]:
    """The lines as compared: masked, without trailing spaces and trailing empty lines."""
    out = []
    for line in lines:
        for pattern, replacement in _MASKS:
            line = pattern.sub(replacement, line)
        out.append(line.rstrip())
    while out and not out[-1]:
        out.pop()
    return out


class Running:
    """One system of the page on free ports, and the page-port -> real-port map."""

    def __init__(self, tmp: Path, name: str, auth_toml: str) -> None:
        self.children: list[Child] = []
        http, ws, zmq = free_port(), free_port(), free_port_run(4)
        self.ports = {DOC_HTTP: http, DOC_WS: ws, **{DOC_ZMQ + i: zmq + i for i in range(4)}}
        ports = ["--http-port", str(http), "--ws-port", str(ws), "--zmq-port", str(zmq)]
        folder = tmp / name
        folder.mkdir(parents=True)
        config = folder / "matchwire.toml"
        if name == "gateway-alone":  # nothing listens on the feed hub's or matchers' ports
            child = Child(["run.py", "gateway", *ports], folder / "run.log")
            self.children.append(child.start())
            wait_for_port(http, timeout=30)
            return
        if name == "main":
            metrics = free_port_run(2, set(range(zmq, zmq + 4)))
            self.ports.update({DOC_METRICS: metrics, DOC_METRICS + 1: metrics + 1})
            config.write_text(f"[server]\nmetrics_port = {metrics}\n")
        else:
            config.write_text(auth_toml)
        child = Child(
            ["run.py", "--config", str(config), "--data-dir", str(folder / "data"), *ports],
            folder / "run.log",
        )
        self.children.append(child.start())
        wait_until(lambda: _healthy(http), timeout=60, interval=0.2)

    def command(self, text: str) -> str:
        return ADDRESS.sub(lambda m: f"127.0.0.1:{self.ports.get(int(m[1]), int(m[1]))}", text)

    def output(self, text: str) -> str:
        back = {real: page for page, real in self.ports.items()}
        return ADDRESS.sub(lambda m: f"127.0.0.1:{back.get(int(m[1]), int(m[1]))}", text)

    def stop(self) -> None:
        for child in self.children:
            child.stop(timeout=20)


def _healthy(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def auth_config(text: str) -> str:
    """The page's ```toml block after its auth marker: the keys the auth examples use."""
    after = text.split("<!-- examples: auth -->", 1)[1]
    return after.split("```toml\n", 1)[1].split("```", 1)[0]


def run_all(tmp: Path, text: str, each: Callable[[Example, list[str]], None]) -> None:
    """Run every example in order, calling `each(example, real output lines)`."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    systems: dict[str, Running] = {}
    try:
        for example in parse(text):
            if example.system not in systems:
                systems[example.system] = Running(tmp, example.system, auth_config(text))
            system = systems[example.system]
            done = subprocess.run(
                ["bash", "-c", system.command(example.command)],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            real = system.output(done.stdout + done.stderr)
            each(example, real.split("\n"))
    finally:
        for system in systems.values():
            system.stop()


def write(tmp: Path) -> None:
    """Rewrite the page's outputs with what the examples print now."""
    text = DOC.read_text()
    lines = text.splitlines()
    outputs: list[tuple[Example, list[str]]] = []
    run_all(tmp, text, lambda example, real: outputs.append((example, real)))
    for example, real in reversed(outputs):
        while real and not real[-1].strip():
            real.pop()
        start, end = example.output_span
        lines[start:end] = [f"{example.indent}{line}".rstrip() for line in real]
    DOC.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python -m tests.api_examples --write")
    with tempfile.TemporaryDirectory() as folder:
        write(Path(folder))
