"""Named fault points, for crash tests.

The code calls ``fault_point("after_op.action")`` at the instants where a crash
is most interesting. Nothing happens unless the process was started with
``LEGATO_FAULTS`` naming that point, e.g. ``LEGATO_FAULTS=after_op.compensate@7``:
the 7th time the point is reached, the process kills itself with SIGKILL,
exactly as ``kill -9`` would (no cleanup, no flush).

A spec names a point or a prefix of one (``after_op`` matches both
``after_op.action`` and ``after_op.compensate``); several specs are separated
by commas. The armed set is read once from the environment: it is a test hook,
not configuration, so it is deliberately not threaded through the API.

Points:

* ``after_op.<op>``: the op ran and returned, its result is not logged yet.
* ``after_log_write``: a decision was logged, the ops it starts are not run yet.
* ``before_op.<op>``: the op's start is logged, the op has not run yet.
* ``xa.before_decision``: every branch of an XA transaction is prepared, its
  initiator has not asked for the decision yet.
* ``outbox.after_publish``: the outbox relay published a row, and has not marked it
  sent yet.
* ``bank.after_prepare``, ``bank.after_register``, ``bank.before_phase2``: the
  demo ledger service (``legato._demo.bank.service``) prepared its XA branch but
  has not registered it; registered it but not answered; was asked for phase 2.
"""

from __future__ import annotations

import os
import signal

_armed: list[tuple[str, int]] | None = None
_hits: dict[str, int] = {}


def _load() -> list[tuple[str, int]]:
    specs = []
    for part in os.environ.get("LEGATO_FAULTS", "").split(","):
        part = part.strip()
        if not part:
            continue
        name, _, count = part.partition("@")
        specs.append((name, int(count or "1")))
    return specs


def fault_point(name: str) -> None:
    global _armed
    if _armed is None:
        _armed = _load()
    if not _armed:
        return
    for spec, count in _armed:
        if name == spec or name.startswith(spec + "."):
            _hits[spec] = _hits.get(spec, 0) + 1
            if _hits[spec] >= count:
                os.kill(os.getpid(), signal.SIGKILL)
