"""The layers of docs/architecture.md, checked on the source: imports point one way.

    matcher  <  clients  <  feedhub, gateway  <  run.py

A package imports only from itself and from lower layers; feedhub and gateway, side by
side, never import each other. Clients know only the wire: of the matcher they use its
codec and protocol constants, its CURVE key loader (one reader of the key files), and
the CLI runs matcher.replay for `matchwire replay`.
The matching core (book, engine) is pure: no clock, no I/O, no randomness, no logging.
Every import counts, also one inside a function.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.support import REPO

LAYER = {"matcher": 0, "clients": 1, "feedhub": 2, "gateway": 2, "run": 3}
CLIENTS_MAY_USE = {"matcher.codec", "matcher.protocol", "matcher.replay", "matcher.curve"}
CORE = ("matcher/book.py", "matcher/engine.py")
# The system's TOML file (matcher/system.py: topology and keys) is read by the process
# entry points; the rest of the matcher knows only its symbol rules (matcher/config.py).
READS_THE_SYSTEM_FILE = {"matcher/service.py", "matcher/replay.py", "matcher/curve.py"}
IMPURE = {
    "os",
    "time",
    "socket",
    "zmq",
    "logging",
    "random",
    "sys",
    "subprocess",
    "threading",
    "asyncio",
    "select",
    "signal",
    "datetime",
    "pathlib",
    "io",
    "shutil",
    "tempfile",
    "secrets",
    "uuid",
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            # `from matcher import codec` imports the module matcher.codec
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def shipped_sources() -> list[tuple[str, Path]]:
    sources = [("run", REPO / "run.py")]
    for package in ("matcher", "clients", "feedhub", "gateway"):
        sources += [(package, path) for path in sorted((REPO / package).rglob("*.py"))]
    return sources


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for package, path in shipped_sources():
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top not in LAYER or top == package:
                continue
            if LAYER[top] >= LAYER[package]:
                wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_clients_know_only_the_wire() -> None:
    wrong = []
    for path in sorted((REPO / "clients").rglob("*.py")):
        for name in imported_modules(path):
            allowed = any(name == m or name.startswith(m + ".") for m in CLIENTS_MAY_USE)
            if name.startswith("matcher.") and not allowed:
                wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert not wrong, "clients reaching into the matcher:\n" + "\n".join(sorted(wrong))


def test_the_matching_core_is_pure() -> None:
    wrong = []
    for relative in CORE:
        for name in imported_modules(REPO / relative):
            if name.split(".")[0] in IMPURE:
                wrong.append(f"{relative} imports {name}")
    assert not wrong, "the core must do no I/O and read no clock:\n" + "\n".join(wrong)


def test_the_matcher_knows_its_rules_not_the_system() -> None:
    wrong = []
    for path in sorted((REPO / "matcher").rglob("*.py")):
        relative = str(path.relative_to(REPO))
        names = imported_modules(path)
        if relative == "matcher/config.py":
            wrong += [f"{relative} imports {n}" for n in names if n.startswith("matcher.")]
        elif relative != "matcher/system.py" and relative not in READS_THE_SYSTEM_FILE:
            wrong += [f"{relative} imports {n}" for n in names if n == "matcher.system"]
    assert not wrong, "the system file read outside the entry points:\n" + "\n".join(wrong)


def test_the_checks_see_a_violation(tmp_path: Path) -> None:
    # The checks themselves: a function-level import is found like a top-level one.
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import time\n    from gateway import app\n")
    assert {"time", "gateway", "gateway.app"} <= imported_modules(sample)


# Each package's modules and the section of docs/architecture.md that must name them all.
DOCUMENTED_IN = {
    "matcher": "The matcher (`matcher/`)",
    "clients": "The clients (`clients/`)",
    "gateway": "The front ends (`gateway/`, `feedhub/`)",
    "feedhub": "The front ends (`gateway/`, `feedhub/`)",
    "tests/bench": "The benchmarks (`tests/bench/`)",
}


def test_the_architecture_doc_names_every_module() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    sections = {part.split("\n", 1)[0].strip(): part for part in text.split("\n## ")[1:]}
    missing = []
    for package, title in DOCUMENTED_IN.items():
        assert title in sections, f"docs/architecture.md has no section '## {title}'"
        body = sections[title]
        for path in sorted((REPO / package).glob("*.py")):
            if path.name == "__init__.py":
                continue
            if f"`{path.name}`" not in body and f"{package}/{path.name}" not in body:
                missing.append(f"{package}/{path.name}")
    assert not missing, f"docs/architecture.md does not describe: {missing}"


def test_each_package_docstring_states_its_layer_and_names_real_modules() -> None:
    for package in ("matcher", "clients", "feedhub", "gateway"):
        text = ast.get_docstring(ast.parse((REPO / package / "__init__.py").read_text()))
        assert text and "Layer:" in text, f"{package}/__init__.py states no layer"
        named = set(re.findall(r"(?<![\w/.])(\w+\.py)\b", text))
        gone = sorted(name for name in named if not (REPO / package / name).exists())
        assert not gone, f"{package}/__init__.py names modules it does not have: {gone}"
