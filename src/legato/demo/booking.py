"""How the in-process demo books a trip: as the saga (``trip``), or as the workflow
(``trip_workflow``, with ``--workflow``); and what each adds to the demo's table."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from legato import Coordinator, Handle, Json, OpName, OpStatus, Saga

from .approver import APPROVED, ASKED, REFUSED, UNANSWERED, Approver
from .check import money, step_name
from .report import Line
from .services import Services
from .trip_workflow import book_trip, open_desk
from .workload import Trip, hotels_in_order


class Op(Protocol):
    """What the table reads of an op in the log."""

    @property
    def branch(self) -> str: ...
    @property
    def op(self) -> OpName: ...
    @property
    def status(self) -> OpStatus: ...


class Booking(Protocol):
    """One way of booking the demo's trips."""

    def running(self, coordinator: Coordinator) -> AbstractAsyncContextManager[None]:
        """What runs alongside the trips, while they are booked."""

    async def start(self, coordinator: Coordinator, trip: Trip) -> Handle:
        """Submit one trip (idempotent by its gid)."""

    def lines(self, ops: Mapping[str, Sequence[Op]]) -> list[Line]:
        """This way's rows of the table, from the trips' ops in the log."""


@dataclass
class SagaBooking:
    """Each trip is the saga of ``trip.trip_saga``: the holds at once, then pay."""

    saga: Saga

    @asynccontextmanager
    async def running(self, coordinator: Coordinator) -> AsyncIterator[None]:
        yield

    async def start(self, coordinator: Coordinator, trip: Trip) -> Handle:
        return await coordinator.submit(self.saga, trip.payload, gid=trip.gid)

    def lines(self, ops: Mapping[str, Sequence[Op]]) -> list[Line]:
        return []


@dataclass
class WorkflowBooking:
    """Each trip is the workflow ``trip_workflow.book_trip``; trips over ``over`` cents
    wait up to ``within`` seconds for ``approver``'s signal."""

    services: Services
    desk: str
    approver: Approver
    over: int
    within: float

    @asynccontextmanager
    async def running(self, coordinator: Coordinator) -> AsyncIterator[None]:
        coordinator.register(book_trip)
        with open_desk(self.desk, self.services, self.approver.ask):
            async with self.approver.serving(coordinator):
                yield

    async def start(self, coordinator: Coordinator, trip: Trip) -> Handle:
        order: dict[str, Json] = {**trip.payload, "hotels": list(hotels_in_order(trip.payload))}
        approval: dict[str, Json] = {"over": self.over, "within": self.within}
        return await coordinator.start_workflow(book_trip, self.desk, order, approval, gid=trip.gid)

    def lines(self, ops: Mapping[str, Sequence[Op]]) -> list[Line]:
        fell_back = 0
        for trip_ops in ops.values():
            hotels = sorted(
                (o for o in trip_ops if o.op is OpName.ACTION and step_name(o.branch) == "hotel"),
                key=lambda o: o.branch,
            )
            if len(hotels) > 1 and hotels[-1].status is OpStatus.SUCCEEDED:
                fell_back += 1
        tally = self.approver.tally
        return [
            Line("hotel fall-backs", fell_back, "booked in their second hotel"),
            Line("approvals asked", tally[ASKED], f"trips over {money(self.over)}"),
            Line(APPROVED, tally[APPROVED], "signal sent by the demo", detail=True),
            Line(REFUSED, tally[REFUSED], "signal sent: rolled back", detail=True),
            Line(
                UNANSWERED, tally[UNANSWERED], f"rolled back after {self.within:g} s", detail=True
            ),
        ]
