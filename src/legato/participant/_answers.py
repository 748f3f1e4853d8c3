"""The HTTP answers a participant gives the coordinator (DESIGN section 5), framework-free.

Each is a status code and a JSON body; the Starlette, FastAPI and Django helpers wrap
them in their own response types, so every framework answers alike:

- 200 ``{"dtm_result": "SUCCESS", "barrier": "ran"}`` (or ``duplicate``,
  ``null_compensation``, ``hanging``: the barrier skipped the business code);
- 409 ``{"dtm_result": "FAILURE", "message": ...}``: the business code raised
  :class:`legato.Failure` and its transaction rolled back;
- 400 ``{"error": ..., "field": ...}``: the query string does not name a valid barrier.
"""

from __future__ import annotations

from typing import TypeAlias

from .._errors import BarrierRequestError, Failure
from .barrier import BarrierOutcome, PreparedStatus

Answer: TypeAlias = tuple[int, dict[str, str]]


def success(outcome: BarrierOutcome) -> Answer:
    return 200, {"dtm_result": "SUCCESS", "barrier": outcome.value}


def failure(exc: Failure) -> Answer:
    return 409, {"dtm_result": "FAILURE", "message": str(exc)}


def bad_request(exc: BarrierRequestError) -> Answer:
    # no "FAILURE" here: a malformed request is not a business failure of the op
    return 400, {"error": str(exc), "field": exc.field}


def prepared(status: PreparedStatus) -> Answer:
    if status == "rolled_back":
        return 409, {"dtm_result": "FAILURE", "message": "the local transaction rolled back"}
    return 200, {"dtm_result": "SUCCESS"}
