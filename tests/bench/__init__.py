"""Benchmarks: commands that print figures, not tests (pytest collects nothing here).

Run them from a clone: `python run.py bench [core|peers|zmq|rest|ws] [--quick]`, or one
module as `python -m tests.bench.core`. They are not part of the installed packages.
docs/benchmarks.md records their figures with the command and the machine.
"""
