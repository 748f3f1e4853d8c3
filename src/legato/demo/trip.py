"""The trip saga: hold a seat, a room and a car at once, charge the card, confirm.

::

    flight ─┐
    hotel  ─┼─> pay (pivot) ──> confirm
    car    ─┘

The three holds run in parallel. ``pay`` is the pivot: until the card is
charged, any definite failure rolls the trip back (the holds are cancelled,
the charge refunded); once it is charged, ``confirm`` only goes forward and is
retried until it is done.
"""

from __future__ import annotations

from legato import RetryPolicy, Saga

from .services import Services

SAGA_NAME = "book_trip"

# short backoffs: the demo's faults are brief, and it should finish in seconds
HOLD_RETRY = RetryPolicy(max_attempts=6, backoff=0.005, max_backoff=0.02)
PAY_TIMEOUT = 0.2
PAY_RETRY = RetryPolicy(max_attempts=8, backoff=0.005, max_backoff=0.02, timeout=PAY_TIMEOUT)
# an undo is retried longer: past its attempts the trip is stuck for an operator
UNDO_RETRY = RetryPolicy(max_attempts=12, backoff=0.005, max_backoff=0.05, timeout=PAY_TIMEOUT)


def trip_saga(services: Services) -> Saga:
    trip = Saga(SAGA_NAME)
    for step, service in (
        ("flight", services.flights),
        ("hotel", services.hotels),
        ("car", services.cars),
    ):
        trip.step(
            step,
            action=service.reserve,
            compensate=service.cancel,
            depends_on=[],
            retry=HOLD_RETRY,
            compensate_retry=UNDO_RETRY,
        )
    trip.step(
        "pay",
        action=services.payments.charge,
        compensate=services.payments.refund,
        depends_on=["flight", "hotel", "car"],
        pivot=True,
        retry=PAY_RETRY,
        compensate_retry=UNDO_RETRY,
    )
    trip.step("confirm", action=services.confirm_trip, depends_on=["pay"], retry=HOLD_RETRY)
    return trip
