"""What the benchmarks read from the machine: the fsync floor, how busy the cores
are, and the CPU time processes spent (from ``/proc``, Linux only)."""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def fsync_us(directory: str, n: int = 100) -> float:
    """How long one small write + fsync takes here: the floor under every durable commit."""
    path = Path(directory) / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        start = time.perf_counter()
        for _ in range(n):
            os.write(fd, b"x" * 128)
            os.fsync(fd)
        return (time.perf_counter() - start) / n * 1e6
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies over all cores, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cpu_busy(seconds: float = 1.0) -> float:
    """How many cores are busy right now (0 .. cores), sampled over ``seconds``."""
    try:
        b0, t0 = _cpu_times()
        time.sleep(seconds)
        b1, t1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return 0.0
    return (b1 - b0) / max(t1 - t0, 1.0) * (os.cpu_count() or 1)


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold blanks
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (0 once it is gone)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    # fields from the state on: utime and stime are the 12th and 13th
    return (int(fields[11]) + int(fields[12])) / _TICK


def descendants(pid: int) -> list[int]:
    """``pid`` and every process under it (uvicorn's workers are its children)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                parent[int(entry.name)] = int(fields[1])
    found, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, p in parent.items() if p in frontier]
        found.extend(frontier)
    return found


class CpuMeter:
    """CPU seconds used by named groups of processes between ``start`` and ``stop``.

    A process that starts after ``start`` counts from zero; one that ends before
    ``stop`` is missed (the benchmarks' processes live through a run)."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._before: dict[int, float] = {}

    def start(self) -> None:
        self._before = {pid: cpu_seconds(pid) for pids in self.groups.values() for pid in pids}

    def stop(self) -> dict[str, float]:
        return {
            name: sum(cpu_seconds(pid) - self._before.get(pid, 0.0) for pid in pids)
            for name, pids in self.groups.items()
        }
