"""Where the CPU goes: CPU seconds of this process and of the PostgreSQL server.

Read from ``/proc`` (Linux): ``utime + stime`` of a process, all its threads
included; for the PostgreSQL server, the sum over every process named
``postgres`` (the postmaster, each backend, the WAL writer, the checkpointer...).
A backend that exits between two readings takes its CPU with it, so the benches
read the server while their connections are open. Elsewhere than Linux every
reading is ``None`` and the benches print no CPU columns.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pid: int | None = None) -> float | None:
    """CPU seconds (user + system) a process has used so far; ``None`` if unreadable."""
    try:
        stat = Path(f"/proc/{pid or os.getpid()}/stat").read_text()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: fields start after the last ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def server_cpu(name: str = "postgres") -> float | None:
    """CPU seconds used so far by every live process whose command is ``name``."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    total = 0.0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != name:
                continue
        except OSError:
            continue
        cpu = process_cpu(int(entry.name))
        if cpu is not None:
            total += cpu
    return total


class CpuMeter:
    """CPU used by this process and by the PostgreSQL server between ``start`` and
    ``stop``, per unit of work (``per(n)``: milliseconds each)."""

    def __init__(self, server: bool) -> None:
        self._server = server
        self._p0: float | None = None
        self._s0: float | None = None
        self.process_s: float | None = None
        self.server_s: float | None = None

    def start(self) -> None:
        self._p0 = process_cpu()
        self._s0 = server_cpu() if self._server else None

    def stop(self) -> None:
        p1 = process_cpu()
        s1 = server_cpu() if self._server else None
        self.process_s = None if p1 is None or self._p0 is None else p1 - self._p0
        self.server_s = None if s1 is None or self._s0 is None else s1 - self._s0

    def per(self, n: int) -> dict[str, float | None]:
        def ms(seconds: float | None) -> float | None:
            return None if seconds is None or not n else seconds / n * 1e3

        return {"process_cpu_ms": ms(self.process_s), "server_cpu_ms": ms(self.server_s)}
