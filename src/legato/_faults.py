"""Named fault points, for crash tests.

The code calls ``fault_point("after_op.action")`` at the instants where a crash
is most interesting. Nothing happens unless the process was started with
``LEGATO_FAULTS`` naming that point, e.g. ``LEGATO_FAULTS=after_op.compensate@7``:
the 7th time the point is reached, the process kills itself with SIGKILL,
exactly as ``kill -9`` would (no cleanup, no flush).

A spec names a point or a prefix of one (``after_op`` matches both
``after_op.action`` and ``after_op.compensate``); several specs are separated
by commas. The armed set is read once per process (``legato._process_settings``):
it is a test hook, not configuration, so it is deliberately not threaded through
the API.

Points:

* ``after_op.<op>``: the op ran and returned, its result is not logged yet.
* ``after_log_write``: a decision was logged, the ops it starts are not run yet.
* ``before_op.<op>``: the op's start is logged, the op has not run yet.
* ``after_signal``: a signal for a workflow is kept in the log; its body has not been
  handed it yet.
* ``xa.before_decision``: every branch of an XA transaction is prepared, its
  initiator has not asked for the decision yet.
* ``outbox.after_publish``: the outbox relay published a row, and has not marked it
  sent yet.

The demo's ledger service arms crash points of its own (``bank.*``) from the same
variable: ``legato.demo.bank.crash``.
"""

from __future__ import annotations

import os
import signal

from ._process_settings import process_settings

_hits: dict[str, int] = {}
_armed: tuple[tuple[str, int], ...] | None = None  # read at the first point reached


def fault_point(name: str) -> None:
    """Kill this process here if ``LEGATO_FAULTS`` arms ``name`` (or a prefix of it) and
    this is the armed hit."""
    global _armed
    if _armed is None:
        _armed = tuple(process_settings().faults)
    if not _armed:
        return  # the usual case, on every op: as little as possible
    for spec, count in _armed:
        if name == spec or name.startswith(spec + "."):
            _hits[spec] = _hits.get(spec, 0) + 1
            if _hits[spec] >= count:
                os.kill(os.getpid(), signal.SIGKILL)
