"""The faults a demo service injects into its own HTTP answers.

The draws are the in-process demo's (``legato.demo.faults.Faults``): a hash of
the seed, the fault's kind and what it is about. Here "what it is about" is one
attempt of one op: the ``Idempotency-Key`` the coordinator sends
(``gid/branch/op``) and its ``Legato-Attempt`` header. So the same seed strikes
the same attempts whatever order the requests arrive in, and a retry draws
afresh.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..faults import Faults

# how a fault that struck is counted in /stats (and the demo's table)
FLAKY, SLOW, LOST_REPLY, DECLINE = "flaky", "slow", "lost_reply", "decline"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery of one op, as the coordinator named it."""

    gid: str
    branch: str
    op: str
    number: int  # 1 for the first delivery

    @property
    def key(self) -> str:
        return f"{self.gid}/{self.branch}/{self.op}"


class ServiceFaults:
    """Where a service's injected faults strike; see the module docstring.

    * ``slow``: hold the request ``slow_seconds`` (past the coordinator's
      request timeout), then carry it out: it lands late, after the retry.
    * ``flaky``: answer 503 without doing anything.
    * ``lost_reply``: commit, then answer 500 as if the reply was lost.
    * ``decline`` / ``stuck``: per trip, as in the in-process demo.
    """

    def __init__(self, faults: Faults) -> None:
        self.faults = faults

    @property
    def injected(self) -> Counter[str]:
        return self.faults.injected

    def _strikes(self, kind: str, rate: float, attempt: Attempt) -> bool:
        if rate <= 0 or self.faults.draw(kind, attempt.key, attempt.number) >= rate:
            return False
        self.faults.count(kind)
        return True

    def slow(self, attempt: Attempt) -> float:
        """Seconds to hold this request before doing anything (0: not slow)."""
        struck = self._strikes(SLOW, self.faults.slow, attempt)
        return self.faults.slow_seconds if struck else 0.0

    def flaky(self, attempt: Attempt) -> bool:
        return self._strikes(FLAKY, self.faults.flaky, attempt)

    def reply_lost(self, attempt: Attempt) -> bool:
        return self._strikes(LOST_REPLY, self.faults.lost_reply, attempt)

    def declined(self, gid: str) -> bool:
        """Is this trip's card declined? (Counted by the caller, once it takes effect.)"""
        return self.faults.declined(gid)

    def stuck_trip(self, gid: str) -> bool:
        return self.faults.stuck_trip(gid)
