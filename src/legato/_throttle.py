"""Guessing the API token: after too many wrong tokens from one client address
within a window, that address is refused (HTTP 429) until the window has moved on.

Counted: a wrong ``Authorization: Bearer`` token on the API or the dashboard's
buttons, and a wrong token in the dashboard's login form. A request that carries
no token at all is not a guess and is not counted. While an address is refused,
its requests are refused even with the right token, so that the refusal itself
tells a guesser nothing.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

MAX_FAILURES = 20
WINDOW = 60.0
MAX_CLIENTS = 10_000


class Throttle:
    """Wrong tokens per client address, over a sliding window (in memory, per process)."""

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW,
        *,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window <= 0 or max_clients < 1:
            raise ValueError("max_failures and max_clients must be >= 1, window > 0")
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def wait(self, client: str) -> float:
        """Seconds before ``client`` may try again (0: it may now)."""
        times = self._failures.get(client)
        if not times:
            return 0.0
        now = self._clock()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
            return 0.0
        if len(times) < self.max_failures:
            return 0.0
        return times[0] + self.window - now

    def failed(self, client: str) -> None:
        """``client`` gave a wrong token."""
        times = self._failures.pop(client, None)  # re-inserted last: most recently heard
        if times is None:
            if len(self._failures) >= self.max_clients:
                # a flood of addresses: forget the one heard from least recently (the
                # first in the dict), whose failures are the likeliest to have aged out
                del self._failures[next(iter(self._failures))]
            times = deque(maxlen=self.max_failures)
        times.append(self._clock())
        self._failures[client] = times


def of(state: Any) -> Throttle:
    """The app's throttle (``app.state.throttle``), made on first use."""
    throttle: Throttle | None = getattr(state, "throttle", None)
    if throttle is None:
        throttle = state.throttle = Throttle()
    return throttle


def client(request: Any) -> str:
    """The address a request came from (uvicorn resolves trusted proxies' headers)."""
    return request.client.host if request.client else "unknown"


def refused_for(request: Any) -> float:
    """Seconds the address of ``request`` must wait before trying a token again (0: none)."""
    return of(request.app.state).wait(client(request))


def count_wrong(request: Any) -> None:
    """A wrong token came with ``request``."""
    of(request.app.state).failed(client(request))


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
