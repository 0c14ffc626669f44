"""`python run.py bench --quick` runs every benchmark and prints every figure.

How fast is not asserted (machines are shared and noisy): only that each benchmark
ran to the end and produced its figures.
"""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO

EXPECTED = {  # a few figures each benchmark must print, by (benchmark, figure)
    ("core", "core_ops_per_s"),
    ("core", "bare_ops_per_s"),
    ("core", "bytes_per_resting_order"),
    ("peers", "matchwire core.ops_per_s"),
    ("zmq", "echo_p50_us"),
    ("zmq", "fsync_p50_us"),
    ("zmq", "batch_p50_us"),
    ("zmq", "batch_orders_per_s"),
    ("zmq", "replay_records_per_s"),
    ("zmq", "restart_s"),
    ("rest", "floor_p50_us"),
    ("rest", "gateway_p50_us"),
    ("rest", "gateway_req_s"),
    ("ws", "trade_p50_us_1c"),
    ("ws", "book_p50_us_1c"),
    ("ws", "deliveries_per_s"),
}


def test_bench_quick_prints_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, "run.py", "bench", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = {}
    for line in result.stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("benchmark", "---"):
            rows[(cells[0], cells[1])] = cells[2]
    missing = EXPECTED - set(rows)
    assert not missing, f"figures missing: {sorted(missing)}\n{result.stdout[-3000:]}"
    for key in EXPECTED:
        assert float(rows[key].replace(",", "")) > 0, (key, rows[key])


def test_bench_refuses_an_unknown_benchmark() -> None:
    result = subprocess.run(
        [sys.executable, "run.py", "bench", "nonsense"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "unknown benchmark" in result.stderr


def test_bench_from_an_installed_package_says_to_use_a_clone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # run.py as pip installs it: alone in site-packages, without the clone's tests/bench/.
    installed = tmp_path / "site"
    installed.mkdir()
    (installed / "run.py").write_text((REPO / "run.py").read_text())
    result = subprocess.run(
        [sys.executable, str(installed / "run.py"), "bench", "core"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "from a clone of the repository" in result.stderr
