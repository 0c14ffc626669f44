"""The build of matchwire: the hot modules compiled when a C compiler is there.

Everything else is in pyproject.toml. matcher/book.py and matcher/engine.py (HOT_MODULES
in matcher/_build.py) stay plain Python; a copy of each, under the module name
matcher._compiled.<name>, is compiled by Cython (typed by the .pxd beside the .py) and
installed beside them with a hash of the sources it came from (build.json). Without a C
compiler (or Cython) the install goes on as the pure build and says so in one line.
`MATCHWIRE_PURE_PYTHON=1` at install time skips the compilation. docs/architecture.md,
"Two builds", has the reasons.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from matcher._build import BUILD_INFO, HOT_MODULES, TWIN_PACKAGE, source_hash  # noqa: E402

TWIN_SOURCES = ROOT / "build" / "twin"  # generated copies, never committed
CYTHON_DIRECTIVES = {
    "language_level": 3,
    # Types come from the .pxd files only: the .py annotations are for mypy and readers
    # (and Cython would turn `x: int` into a check that refuses what mypy accepts).
    "annotation_typing": False,
    "boundscheck": False,
    "wraparound": True,  # the code indexes prices[-1]
    "initializedcheck": False,
}


def warn_pure(why: object) -> None:
    print(f"matchwire: WARNING: installing the pure-Python build only ({why})", flush=True)


def write_twin_sources() -> list[Path]:
    """Copy the hot modules to build/twin/matcher/_compiled/, importing each other there."""
    package_dir = TWIN_SOURCES / Path(*TWIN_PACKAGE.split("."))
    if TWIN_SOURCES.exists():
        shutil.rmtree(TWIN_SOURCES)
    package_dir.mkdir(parents=True)
    for init in (TWIN_SOURCES / "matcher" / "__init__.py", package_dir / "__init__.py"):
        init.write_text("")
    names = "|".join(HOT_MODULES)
    rename = re.compile(rf"\bfrom matcher\.({names}) (c?import)\b")
    sources = []
    for name in HOT_MODULES:
        for suffix in (".py", ".pxd"):
            text = (ROOT / "matcher" / f"{name}{suffix}").read_text()
            text = rename.sub(rf"from {TWIN_PACKAGE}.\1 \2", text)
            (package_dir / f"{name}{suffix}").write_text(text)
        sources.append(package_dir / f"{name}.py")
    return sources


def twin_extensions() -> list[Extension]:
    if os.environ.get("MATCHWIRE_PURE_PYTHON", "").strip() not in ("", "0"):
        warn_pure("MATCHWIRE_PURE_PYTHON is set")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        warn_pure("Cython is not installed")
        return []
    sources = write_twin_sources()
    extensions = [Extension(f"{TWIN_PACKAGE}.{path.stem}", [str(path)]) for path in sources]
    try:
        return cythonize(
            extensions,
            compiler_directives=CYTHON_DIRECTIVES,
            include_path=[str(TWIN_SOURCES)],
            quiet=True,
        )
    except Exception as exc:  # a Cython error must not stop the pure install
        warn_pure(f"Cython failed: {exc}")
        return []


class BuildTwins(build_ext):
    """build_ext that degrades to the pure build, and records what it compiled."""

    def run(self) -> None:
        if not self.extensions:
            return
        if self.inplace:  # an in-place or editable build: the twins' folder is not in git
            (ROOT / Path(*TWIN_PACKAGE.split("."))).mkdir(exist_ok=True)
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers: the pure build still installs
            why = f"no working C compiler: {exc}"
            warn_pure(why)
            # pip shows a build's output only with -v: the record says it at run time
            # (`python run.py --version`, and the error under MATCHWIRE_REQUIRE_COMPILED).
            self.write_build_info({"compiled": False, "reason": why})
            return
        self.write_build_info({"compiled": True})

    def write_build_info(self, outcome: dict[str, object]) -> None:
        import Cython

        target = Path(self.get_ext_fullpath(f"{TWIN_PACKAGE}.{HOT_MODULES[0]}")).parent
        target.mkdir(parents=True, exist_ok=True)
        info = {
            **outcome,
            "source_hash": source_hash(ROOT / "matcher"),
            "modules": list(HOT_MODULES),
            "compiler": f"Cython {Cython.__version__}",
            "python": sys.implementation.cache_tag,
        }
        (target / BUILD_INFO).write_text(json.dumps(info, indent=1) + "\n")
        if outcome["compiled"]:
            print(f"matchwire: compiled {', '.join(HOT_MODULES)} into {target}", flush=True)

    def get_outputs(self) -> list[str]:
        outputs = super().get_outputs()
        if self.extensions:
            target = Path(self.get_ext_fullpath(f"{TWIN_PACKAGE}.{HOT_MODULES[0]}")).parent
            outputs.append(str(target / BUILD_INFO))
        return outputs


setup(ext_modules=twin_extensions(), cmdclass={"build_ext": BuildTwins})
