"""ruff and mypy are part of the suite: a lint, format or type error fails CI like a bug does."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.support import REPO


@pytest.mark.skipif(
    shutil.which("ruff") is None, reason="ruff not installed: pip install '.[test]'"
)
def test_ruff_is_clean() -> None:
    result = subprocess.run(["ruff", "check", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(
    shutil.which("ruff") is None, reason="ruff not installed: pip install '.[test]'"
)
def test_the_tree_is_formatted() -> None:
    """`ruff format` once over the tree keeps diffs about what changed, not about layout."""
    result = subprocess.run(
        ["ruff", "format", "--check", "."], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, "run `ruff format .`:\n" + result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    pytest.importorskip("mypy")
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
