"""Self-fencing: the moment a coordinator stops starting the ops of a transaction whose
lease it has not been able to renew.

A lease is an expiry written on this coordinator's wall clock: ``now + lease``, ``now``
read just before the call that takes or renews it (a claim, a create, a renewal).
Another coordinator may claim the transaction once *its own* wall clock passes that
expiry, and call the same ops. So this coordinator stops starting ops of it, and cancels
the calls it has in flight, at its **fence**::

    fence = start of the last call that took or renewed the lease + lease - margin

- the *start* of the call, since the log may have written the expiry at any moment
  while the call was on its way;
- on the monotonic clock, since a step of the wall clock must not move it;
- ``margin`` (``lease * MARGIN_SHARE``: 3 s of the default 15 s lease) covers the
  drift between this machine's wall clock and the claimer's, and the moments a
  cancelled call takes to end. The assumption: the coordinators' wall clocks agree to
  well within the margin (NTP keeps them within milliseconds).

Renewals run every ``lease / 3``, and at every poll after one fails: a healthy
coordinator's fence stays ahead of it, and it falls only when no renewal has landed
for ``lease - margin`` seconds (at least two in a row failed, or took that long).
"""

from __future__ import annotations

import math

MARGIN_SHARE = 0.2
"""The share of the lease kept as a margin before the lease's end (see the docstring)."""


def margin(lease: float) -> float:
    """How long before its lease's end a coordinator stops starting ops: ``lease / 5``."""
    if isinstance(lease, bool) or not (isinstance(lease, int | float) and 0 < lease < math.inf):
        raise ValueError(f"a lease is a positive number of seconds, not {lease!r}")
    return lease * MARGIN_SHARE


def fence_at(taken: float, lease: float) -> float:
    """The fence of a lease taken or renewed by a call that began at ``taken`` (any clock:
    the fence is on the same one)."""
    return taken + lease - margin(lease)


def fence_of_expiry(expires_at: float, wall_now: float, now: float, lease: float) -> float:
    """The fence, on the monotonic clock (``now`` is its reading), of a lease the log
    says expires at ``expires_at``: a time on this coordinator's wall clock, which read
    ``wall_now`` at the moment ``now`` was read."""
    return now + (expires_at - wall_now) - margin(lease)


__all__ = ["MARGIN_SHARE", "fence_at", "fence_of_expiry", "margin"]
