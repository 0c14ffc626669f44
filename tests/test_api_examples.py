"""docs/api.md's examples reproduce: each command run in the order printed, against real
systems (tests/api_examples.py), prints what the page shows, up to the masks listed
there (timestamps, build, version, curl's timings, the rate limiter's wait).

The one coincidence it cannot mask: a run that crosses midnight UTC splits the session's
trades over two `1d` candles, and that example then differs."""

from __future__ import annotations

import difflib
from pathlib import Path

from tests.api_examples import DOC, MASKS, Example, masked, parse, run_all


def test_the_page_has_examples_for_every_system_and_few_masks() -> None:
    examples = parse(DOC.read_text())
    assert len(examples) >= 40
    assert {example.system for example in examples} == {"main", "gateway-alone", "auth"}
    assert all(example.shown for example in examples), "an example shows its output"
    assert len(MASKS) <= 6, "masks are for what differs from run to run by nature"


def test_every_example_of_docs_api_md_prints_what_the_page_shows(tmp_path: Path) -> None:
    differences: list[str] = []

    def compare(example: Example, real: list[str]) -> None:
        shown, got = masked(example.shown), masked(real)
        if shown != got:
            diff = "\n".join(difflib.unified_diff(shown, got, "docs/api.md", "real", lineterm=""))
            differences.append(f"docs/api.md line {example.line}: $ {example.command}\n{diff}")

    run_all(tmp_path, DOC.read_text(), compare)
    assert not differences, (
        f"{len(differences)} examples differ (regenerate with "
        "`python -m tests.api_examples --write`):\n\n" + "\n\n".join(differences)
    )
