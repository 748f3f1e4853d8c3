"""The ledger service's crash points, for the XA crash tests.

The service names the instants where its death is most interesting
(``bank.after_prepare``: its branch prepared, not registered yet;
``bank.after_register``: registered, not answered; ``bank.before_phase2``: asked
to commit or roll back). A test arms them as it arms Legato's own fault points,
with ``LEGATO_FAULTS`` in the service's environment: ``bank.after_prepare@5``
kills the process the 5th time that point is reached, with SIGKILL, exactly as
``kill -9`` would; a prefix (``bank``) names every point under it, and several
specs are separated by commas.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter


class CrashPoints:
    """The points armed by one ``LEGATO_FAULTS`` value, and how often each was reached."""

    def __init__(self, specs: str) -> None:
        self.armed: list[tuple[str, int]] = []
        for part in specs.split(","):
            name, _, count = part.strip().partition("@")
            if name:
                self.armed.append((name, int(count or "1")))
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()  # the handlers run in a thread pool

    def reach(self, point: str) -> None:
        """The service is at ``point``: die here if a spec armed it and its count is up."""
        for spec, count in self.armed:
            if point == spec or point.startswith(spec + "."):
                with self._lock:
                    self.hits[spec] += 1
                    due = self.hits[spec] >= count
                if due:
                    os.kill(os.getpid(), signal.SIGKILL)
