"""The faults the demo injects into its services, drawn from the seed.

Every draw is a hash of the seed, the fault's kind and what it is about (a
trip, or one attempt of one op), never a shared random stream: so the same
seed injects the same faults into the same calls whatever order the step
threads happen to run in.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from legato import StepContext


class Unavailable(ConnectionError):
    """The service did not answer (injected): the outcome is unknown, so the op is retried."""


class ReplyLost(ConnectionError):
    """The change was made, but its reply was lost on the way back (injected)."""


@dataclass
class Faults:
    """Fault rates (fractions, 0 to 1) and where they strike.

    * ``flaky``: a payment call fails before it reaches the payment service.
    * ``lost_reply``: a payment call takes effect, then its reply is lost.
    * ``slow``: a payment call is held up for ``slow_seconds``, past the step's
      timeout; the coordinator abandons it and retries, and the late call
      lands afterwards.
    * ``decline``: the card of a trip is declined (a definite failure).
    * ``stuck``: the card of a trip is declined *and* its hotel refuses every
      cancellation: the trip is left stuck for an operator.

    Car shortages are not drawn here: the car fleet is simply smaller than the
    demand (see ``workload.plan_inventory``).
    """

    seed: int = 1
    flaky: float = 0.2
    lost_reply: float = 0.05
    slow: float = 0.05
    decline: float = 0.05
    stuck: float = 0.0
    slow_seconds: float = 0.4
    injected: Counter[str] = field(default_factory=Counter, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def draw(self, kind: str, *about: object) -> float:
        """A number in [0, 1), fixed by the seed, ``kind`` and ``about``."""
        text = ":".join(str(part) for part in (self.seed, kind, *about))
        digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def _strikes(self, kind: str, rate: float, *about: object) -> bool:
        if rate <= 0 or self.draw(kind, *about) >= rate:
            return False
        self.count(kind)
        return True

    def _per_attempt(self, kind: str, rate: float, ctx: StepContext) -> bool:
        return self._strikes(kind, rate, ctx.idempotency_key, ctx.attempt)

    # -- on the way to the payment service ------------------------------------------

    def network(self, ctx: StepContext) -> None:
        """A payment request on its way in: maybe held up, maybe never delivered."""
        if self._per_attempt("slow", self.slow, ctx):
            time.sleep(self.slow_seconds)
        if self._per_attempt("flaky", self.flaky, ctx):
            raise Unavailable(f"payment service unavailable (attempt {ctx.attempt})")

    def reply(self, ctx: StepContext) -> None:
        """A payment reply on its way back: maybe lost."""
        if self._per_attempt("lost_reply", self.lost_reply, ctx):
            raise ReplyLost(f"connection reset after the payment service answered ({ctx.op})")

    # -- per trip -------------------------------------------------------------------

    def stuck_trip(self, gid: str) -> bool:
        """Is this a trip whose card is declined and whose hotel then refuses to cancel?"""
        return self.stuck > 0 and self.draw("stuck", gid) < self.stuck

    def declined(self, gid: str) -> bool:
        if self.stuck_trip(gid):
            return True
        return self.decline > 0 and self.draw("decline", gid) < self.decline

    def count(self, kind: str) -> None:
        """Count a fault that struck (shown in the demo's table)."""
        with self._lock:
            self.injected[kind] += 1
