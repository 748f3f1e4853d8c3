"""The ledger service's crash points, for the XA crash tests.

The service names the instants where its death is most interesting
(``bank.after_prepare``: its branch prepared, not registered yet;
``bank.after_register``: registered, not answered; ``bank.before_phase2``: asked
to commit or roll back). A test arms them as it arms Legato's own fault points,
with ``LEGATO_FAULTS`` in the service's environment, which Legato reads once per
process (``legato.settings.process_settings().faults``): ``bank.after_prepare@5``
kills the process the 5th time that point is reached, with SIGKILL, exactly as
``kill -9`` would; a prefix (``bank``) names every point under it, and several
specs are separated by commas.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Iterable


class CrashPoints:
    """The armed points, ``(point or prefix, hit)`` pairs, and how often each was reached."""

    def __init__(self, armed: Iterable[tuple[str, int]] = ()) -> None:
        self.armed = list(armed)
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
