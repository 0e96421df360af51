"""CPU time of processes and everything under them, from /proc (Linux).

A process's figure is its own user + system time and that of its children it has reaped
(`utime + stime + cutime + cstime` in /proc/<pid>/stat), plus the same for each descendant
still alive. A reaped child's time is in its parent's `cutime`/`cstime` and a live one's is
not, so nothing counts twice, and PostgreSQL's figure (the postmaster's) covers every backend,
those of connections already closed too.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    ppid: int
    ticks: int  # utime + stime + cutime + cstime


def parse_stat(text: str) -> ProcStat:
    """One /proc/<pid>/stat line. The command name is in parentheses and may hold spaces or
    parentheses itself: the fields after it start at the last `)`."""
    pid = int(text[: text.index("(")])
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 of proc(5) (state): ppid is field 4, utime..cstime fields 14-17.
    return ProcStat(pid=pid, ppid=int(fields[1]), ticks=sum(int(f) for f in fields[11:15]))


def _all_processes(proc: Path) -> list[ProcStat]:
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            found.append(parse_stat((entry / "stat").read_text()))
        except (OSError, ValueError, IndexError):
            continue  # gone since the listing
    return found


def cpu_seconds(roots: Mapping[str, int], proc: Path = Path("/proc")) -> dict[str, float]:
    """CPU seconds so far of each named process and its descendants (absent if it is gone)."""
    stats = _all_processes(proc)
    by_pid = {s.pid: s for s in stats}
    children: defaultdict[int, list[int]] = defaultdict(list)
    for s in stats:
        children[s.ppid].append(s.pid)
    result: dict[str, float] = {}
    for name, root in roots.items():
        if root not in by_pid:
            continue
        ticks, todo = 0, [root]
        while todo:
            pid = todo.pop()
            ticks += by_pid[pid].ticks
            todo.extend(children.get(pid, ()))
        result[name] = ticks / _TICK
    return result
