"""Which build of the hot modules runs: their compiled twin, or the plain Python files.

The hot modules (HOT_MODULES: matcher/book.py, matcher/engine.py) are plain Python. At
install, setup.py compiles a copy of each with Cython (typed by the `.pxd` beside it) as
the package `matcher._compiled`, and records in `matcher/_compiled/build.json` a hash of
the sources it compiled. Each hot module asks `twin()` at import whether a compiled build
of its exact source exists; if so it hands its place in sys.modules to that twin.

Where a build is looked for, in order:
1. `matcher/_compiled/` beside the running package (an installed copy, or an editable /
   in-place build in a clone);
2. the installed `matchwire` distribution's folder. `pip install . && python run.py` in a
   clone runs the clone's own files (the script's folder comes first on sys.path), and
   the build lives in site-packages: it is used there only if it was built from the very
   source that is running (same hash).

Switches (environment, read once per process):
- MATCHWIRE_PURE_PYTHON=1: always the plain files (it wins over the next one);
- MATCHWIRE_REQUIRE_COMPILED=1: no build, a stale build, or one that fails to import is
  an ImportError saying which (CI runs the suite this way).
A stale build (compiled from other sources: an editable install after an edit) is never
used; without REQUIRE the plain files run and one warning says so. An install whose
compilation failed leaves a record saying why (pip shows a build's output only with -v),
which `describe()` reports.

See docs/architecture.md, "Two builds".
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
import types
import warnings
from pathlib import Path
from typing import Any

HOT_MODULES = ("book", "engine")  # compiled together, in this order (engine cimports book)
TWIN_PACKAGE = "matcher._compiled"
BUILD_INFO = "build.json"
DISTRIBUTION = "matchwire"
SOURCE_DIR = Path(__file__).resolve().parent


class StaleBuildWarning(UserWarning):
    """A compiled build exists but was built from other sources: the plain files run."""


def source_files(source_dir: Path = SOURCE_DIR) -> list[Path]:
    """Every file whose content decides what the compiled build does."""
    return [source_dir / f"{name}{suffix}" for name in HOT_MODULES for suffix in (".py", ".pxd")]


def source_hash(source_dir: Path = SOURCE_DIR) -> str:
    """sha256 over the hot modules' .py and .pxd files (names and contents)."""
    digest = hashlib.sha256()
    for path in source_files(source_dir):
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
        digest.update(b"\0")
    return digest.hexdigest()


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip() not in ("", "0")


def candidate_dirs() -> list[Path]:
    """Folders that may hold a compiled build, most specific first (no duplicates)."""
    found = [SOURCE_DIR / "_compiled"]
    # Every installed copy: a clone's own build metadata (an egg-info from an in-tree
    # build) can come first on sys.path and point back at the clone.
    from importlib.metadata import distributions

    for dist in distributions(name=DISTRIBUTION):
        try:
            found.append(Path(str(dist.locate_file("matcher/_compiled"))).resolve())
        except OSError:
            continue
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def read_build_info(folder: Path) -> dict[str, Any] | None:
    """The build's record, or None when `folder` holds no build."""
    try:
        info = json.loads((folder / BUILD_INFO).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


class Selection:
    """The outcome of the one choice a process makes: which build, from where, and why."""

    def __init__(self) -> None:
        self.build = "pure"
        self.folder: Path | None = None
        self.reason = "no compiled build found"
        self.info: dict[str, Any] = {}
        self.modules: dict[str, types.ModuleType] = {}

    def describe(self) -> str:
        """One line for --version, bench output and health answers."""
        if self.build == "compiled":
            return f"compiled ({self.info.get('compiler', '?')}, {self.folder})"
        return f"pure ({self.reason})"


def _select() -> Selection:
    selection = Selection()
    if _flag("MATCHWIRE_PURE_PYTHON"):
        selection.reason = "MATCHWIRE_PURE_PYTHON=1"
        return selection
    require = _flag("MATCHWIRE_REQUIRE_COMPILED")
    running = source_hash()
    stale: list[Path] = []
    for folder in candidate_dirs():
        info = read_build_info(folder)
        if info is None:
            continue
        if info.get("compiled") is False:  # installed pure: the compiler failed (setup.py)
            if info.get("source_hash") == running:
                selection.reason = f"installed without compiled modules: {info.get('reason')}"
            continue
        if info.get("source_hash") != running:
            stale.append(folder)
            continue
        try:
            modules = _load(folder)
        except ImportError as exc:
            if require:
                raise ImportError(
                    f"MATCHWIRE_REQUIRE_COMPILED=1: the compiled build in "
                    f"{folder} does not import: {exc}"
                ) from exc
            selection.reason = f"the compiled build in {folder} does not import: {exc}"
            warnings.warn(
                f"matchwire: {selection.reason}; running the pure build",
                StaleBuildWarning,
                stacklevel=2,
            )
            return selection
        selection.build, selection.folder, selection.info = "compiled", folder, info
        selection.modules, selection.reason = modules, "built from this source"
        return selection
    if stale:  # the failed install of this very source said more than "stale"
        if not selection.reason.startswith("installed without"):
            selection.reason = (
                f"the compiled build in {stale[0]} was built from other "
                "sources (rebuild: pip install .)"
            )
    if require:
        looked = ", ".join(str(path) for path in candidate_dirs())
        raise ImportError(
            f"MATCHWIRE_REQUIRE_COMPILED=1 but {selection.reason} (looked in {looked})"
        )
    if stale:
        warnings.warn(
            f"matchwire: {selection.reason}; running the pure build",
            StaleBuildWarning,
            stacklevel=2,
        )
    return selection


def _load(folder: Path) -> dict[str, types.ModuleType]:
    """Import every twin from `folder` as matcher._compiled.<name>, or none of them."""
    package = types.ModuleType(TWIN_PACKAGE, "The compiled twins of matcher's hot modules.")
    package.__path__ = [str(folder)]
    package.__package__ = TWIN_PACKAGE
    sys.modules[TWIN_PACKAGE] = package
    try:
        return {name: importlib.import_module(f"{TWIN_PACKAGE}.{name}") for name in HOT_MODULES}
    except ImportError:
        for name in (TWIN_PACKAGE, *(f"{TWIN_PACKAGE}.{n}" for n in HOT_MODULES)):
            sys.modules.pop(name, None)
        raise


_selection: Selection | None = None


def selection() -> Selection:
    """The build this process runs (chosen at the first call, then fixed)."""
    global _selection
    if _selection is None:
        _selection = _select()
    return _selection


def twin(name: str) -> types.ModuleType | None:
    """The compiled module to use in place of matcher.<name>, or None for the plain file."""
    return selection().modules.get(name)


def take_place(module_name: str, name: str) -> None:
    """Put the compiled twin of `name` in the place of the plain module being imported
    as `module_name`, if the selected build has one (the import system returns what
    sys.modules holds once the module's code has run)."""
    compiled = twin(name)
    if compiled is not None:
        sys.modules[module_name] = compiled


def build_name() -> str:
    """'compiled' or 'pure': which build of the hot modules this process runs."""
    return selection().build
