"""CPU time of a process and its descendants, from a /proc on fixed data (`bench/cpu.py`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.cpu import cpu_seconds, parse_stat

TICK = os.sysconf("SC_CLK_TCK")


def stat_line(pid: int, ppid: int, comm: str, utime: int, stime: int, cutime: int = 0) -> str:
    # Fields 3..17 of proc(5): state, ppid, pgrp, session, tty, tpgid, flags, minflt, cminflt,
    # majflt, cmajflt, utime, stime, cutime, cstime; then the rest.
    rest = f"S {ppid} 1 1 0 -1 4194304 10 0 0 0 {utime} {stime} {cutime} 0 20 0 1 0 100"
    return f"{pid} ({comm}) {rest}\n"


def test_a_stat_line_is_read_past_a_command_name_with_spaces_and_parentheses() -> None:
    stat = parse_stat(stat_line(42, 7, "postgres: stopper (idle)", utime=30, stime=12, cutime=5))
    assert (stat.pid, stat.ppid, stat.ticks) == (42, 7, 47)


def test_a_process_counts_with_every_descendant_and_only_those(tmp_path: Path) -> None:
    lines = {
        100: stat_line(100, 1, "postgres", utime=10 * TICK, stime=0, cutime=4 * TICK),
        101: stat_line(101, 100, "postgres: walwriter", utime=TICK, stime=TICK),
        102: stat_line(102, 101, "grandchild", utime=TICK, stime=0),
        200: stat_line(200, 1, "python -m stopper.cli serve", utime=3 * TICK, stime=TICK),
    }
    for pid, line in lines.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(line)
    (tmp_path / "self").mkdir()  # not a process directory
    assert cpu_seconds({"postgres": 100, "api": 200, "gone": 999}, proc=tmp_path) == {
        "postgres": pytest.approx(17.0),
        "api": pytest.approx(4.0),
    }
