"""What a test's own process went through meanwhile: the event loop's longest stall and
the growth of its peak memory.

    async with Watch() as watch:
        ...                                     # the work under test, on this loop
    assert watch.longest_stall < 1.0            # seconds the loop could not run a task
    assert watch.peak_growth < 100 * 2**20      # bytes, peak RSS over the RSS before

The peak is the kernel's high-water mark (``VmHWM``), reset on entry through
``/proc/self/clear_refs``: a body read whole and freed a moment later counts, which
sampling the resident size afterwards would miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from types import TracebackType

TICK = 0.02


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM starts again from VmRSS


class Watch:
    def __init__(self) -> None:
        self.longest_stall = 0.0
        self.peak_growth = 0
        self._before = 0
        self._ticker: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watch:
        _reset_peak()
        self._before = _status_kib("VmRSS")
        self._ticker = asyncio.get_running_loop().create_task(self._tick())
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._ticker is not None
        self._ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker
        self.peak_growth = (_status_kib("VmHWM") - self._before) * 1024

    async def _tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            self.longest_stall = max(self.longest_stall, now - last - TICK)
            last = now
