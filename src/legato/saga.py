"""Defining a saga over plain Python callables.

>>> trip = Saga("book_trip")
>>> trip.step("flight", action=reserve_flight, compensate=cancel_flight)  # doctest: +SKIP
>>> trip.step("pay", action=charge, compensate=refund, depends_on=["flight"])  # doctest: +SKIP

Steps run in declaration order unless ``depends_on`` is given on some step, in
which case the saga is a graph: a step starts once every step it names has
succeeded (a step with ``depends_on=[]`` starts at once).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._bounds import check_branch_id
from ._errors import DefinitionError
from ._model import DEFAULT_ACTION_RETRY, DEFAULT_COMPENSATE_RETRY, Json, OpName, RetryPolicy
from .modes.saga import SagaPlan, StepPlan
from .transports.http import HttpCall
from .transports.local import StepContext

WIRE_SAGA = "wire:saga"
"""The name of the sagas submitted over the coordinator service's API: they carry their
definition in the log, and every coordinator claims them."""

StepFn = Callable[[StepContext], Json] | Callable[[StepContext], Awaitable[Json]]
StepOp = StepFn | HttpCall
"""What an op runs: a Python callable (sync or async), or a call to an HTTP participant."""


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    action: StepOp
    compensate: StepOp | None
    depends_on: tuple[str, ...] | None
    pivot: bool
    retry: RetryPolicy
    compensate_retry: RetryPolicy
    failures: tuple[type[BaseException], ...]
    in_thread: bool = True


def _exception_types(
    where: str, failures: Iterable[type[BaseException]]
) -> tuple[type[BaseException], ...]:
    # checked here: a non-class in an ``except`` clause only blows up when a step raises
    if isinstance(failures, type):
        raise DefinitionError(f"{where}: failures takes a list of exception classes")
    out = tuple(failures)
    for f in out:
        if not (isinstance(f, type) and issubclass(f, BaseException)):
            raise DefinitionError(f"{where}: failures must be exception classes, not {f!r}")
    return out


def _callable_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}:{qualname}"


class Saga:
    """A named saga definition. Register it with a ``Coordinator`` before submitting.

    ``failures`` lists exception types that count as a definite failure for
    every step, besides ``legato.Failure``; a step may add its own.
    """

    def __init__(
        self,
        name: str,
        *,
        failures: Iterable[type[BaseException]] = (),
        timeout_to_fail: float | None = None,
    ) -> None:
        if not name or not isinstance(name, str):
            raise DefinitionError("a saga needs a non-empty name")
        self.name = name
        self.failures = _exception_types(f"saga {name!r}", failures)
        if timeout_to_fail is not None and (
            isinstance(timeout_to_fail, bool)
            or not isinstance(timeout_to_fail, int | float)
            or not 0 < timeout_to_fail < math.inf
        ):
            raise DefinitionError(
                f"saga {name!r}: timeout_to_fail must be a positive number of seconds, "
                f"not {timeout_to_fail!r}"
            )
        self.timeout_to_fail = timeout_to_fail
        self._steps: list[Step] = []
        self._plan: SagaPlan | None = None
        self._fingerprint: str | None = None

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(self._steps)

    def step(
        self,
        name: str,
        *,
        action: StepOp,
        compensate: StepOp | None = None,
        depends_on: Iterable[str] | None = None,
        pivot: bool = False,
        retry: RetryPolicy = DEFAULT_ACTION_RETRY,
        compensate_retry: RetryPolicy = DEFAULT_COMPENSATE_RETRY,
        failures: Iterable[type[BaseException]] = (),
        in_thread: bool = True,
    ) -> Saga:
        """Add a step; returns the saga so that calls can be chained.

        Sync callables run in the coordinator's step threads. ``in_thread=False``
        calls them on the event loop itself, saving two thread hand-offs per op: only
        for ops that never block for long (an in-process computation, a write to a
        local SQLite file), since the whole coordinator waits while they run.
        """
        check_branch_id(name, f"saga {self.name!r}: step name")
        if any(s.name == name for s in self._steps):
            raise DefinitionError(f"saga {self.name!r}: duplicate step name {name!r}")
        if not (callable(action) or isinstance(action, HttpCall)):
            raise DefinitionError(
                f"saga {self.name!r}, step {name!r}: action is neither callable nor an HttpCall"
            )
        if compensate is not None and not (
            callable(compensate) or isinstance(compensate, HttpCall)
        ):
            raise DefinitionError(
                f"saga {self.name!r}, step {name!r}: compensate is neither callable nor an HttpCall"
            )
        where = f"saga {self.name!r}, step {name!r}"
        if isinstance(depends_on, str):
            # a string is iterable: depends_on="ab" would silently mean ["a", "b"]
            raise DefinitionError(f"{where}: depends_on takes a list of step names, not a string")
        for what, policy in (("retry", retry), ("compensate_retry", compensate_retry)):
            if not isinstance(policy, RetryPolicy):
                raise DefinitionError(f"{where}: {what} must be a RetryPolicy, not {policy!r}")
        errors = _exception_types(where, failures)
        if not in_thread and (retry.timeout is not None or compensate_retry.timeout is not None):
            raise DefinitionError(
                f"{where}: an op run on the event loop (in_thread=False) cannot be timed out"
            )
        deps = None if depends_on is None else tuple(depends_on)
        self._steps.append(
            Step(name, action, compensate, deps, pivot, retry, compensate_retry, errors, in_thread)
        )
        self._plan = None
        self._fingerprint = None
        return self

    def plan(self) -> SagaPlan:
        """Validate the definition and return its structure (cached)."""
        if self._plan is None:
            self._plan = self._build_plan()
        return self._plan

    def _build_plan(self) -> SagaPlan:
        where = f"saga {self.name!r}"
        if not self._steps:
            raise DefinitionError(f"{where} has no steps")
        names = [s.name for s in self._steps]
        graph = any(s.depends_on is not None for s in self._steps)
        deps: dict[str, tuple[str, ...]] = {}
        for i, s in enumerate(self._steps):
            if not graph:
                deps[s.name] = (names[i - 1],) if i else ()
                continue
            given = s.depends_on or ()
            for d in given:
                if d not in names:
                    raise DefinitionError(f"{where}, step {s.name!r} depends on unknown step {d!r}")
                if d == s.name:
                    raise DefinitionError(f"{where}, step {s.name!r} depends on itself")
            deps[s.name] = tuple(dict.fromkeys(given))
        order = _topological(where, names, deps)
        pivots = [s.name for s in self._steps if s.pivot]
        if len(pivots) > 1:
            raise DefinitionError(f"{where} has more than one pivot step: {pivots}")
        after: frozenset[str] = frozenset()
        pivot = pivots[0] if pivots else None
        if pivot is not None:
            before = _ancestors(pivot, deps)
            after = frozenset(n for n in names if pivot in _ancestors(n, deps))
            loose = [n for n in names if n != pivot and n not in before and n not in after]
            if loose:
                raise DefinitionError(
                    f"{where}: steps {loose} are neither before nor after the pivot {pivot!r}; "
                    "every step must depend on it or be a dependency of it"
                )
        by_name = {s.name: s for s in self._steps}
        steps = tuple(
            StepPlan(
                name=n,
                deps=deps[n],
                compensable=by_name[n].compensate is not None,
                pivot=by_name[n].pivot,
                action_retry=by_name[n].retry,
                compensate_retry=by_name[n].compensate_retry,
            )
            for n in order
        )
        return SagaPlan(steps=steps, after_pivot=after, pivot=pivot)

    def fingerprint(self) -> str:
        """A hash of the saga's structure: a gid may only be resubmitted with the same one."""
        if self._fingerprint is None:
            self._fingerprint = self._hash()
        return self._fingerprint

    def _hash(self) -> str:
        plan = self.plan()
        # an HTTP op's URL is part of what the saga does; a callable's name is not (code
        # may be moved or renamed between deployments without changing the saga)
        text = "|".join(
            f"{s.name}<{','.join(s.deps)}>{'c' if s.compensable else ''}{'p' if s.pivot else ''}"
            + "".join(
                f"[{op.target} {op.content()!r}]"
                for op in (self.by_name(s.name).action, self.by_name(s.name).compensate)
                if isinstance(op, HttpCall)
            )
            for s in plan.steps
        )
        return hashlib.sha256(f"{self.name}|{text}".encode()).hexdigest()[:32]

    def by_name(self, step: str) -> Step:
        for s in self._steps:
            if s.name == step:
                return s
        raise DefinitionError(f"saga {self.name!r} has no step {step!r}")

    def target(self, step: str, op: OpName) -> str:
        """The name of the callable an op runs, as shown in the log."""
        s = self.by_name(step)
        fn = s.action if op is OpName.ACTION else s.compensate
        if fn is None:
            return ""
        return fn.target if isinstance(fn, HttpCall) else _callable_name(fn)

    @property
    def portable(self) -> bool:
        """Every op is an HTTP call: the saga can be stored in the log whole, and any
        coordinator can drive it without its Python definition."""
        return all(
            isinstance(s.action, HttpCall)
            and (s.compensate is None or isinstance(s.compensate, HttpCall))
            for s in self._steps
        )


def _topological(where: str, names: list[str], deps: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Declaration order, constrained by dependencies; a cycle is refused by name."""
    done: list[str] = []
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            cycle = [*path[path.index(n) :], n]
            raise DefinitionError(f"{where} has a dependency cycle: {' -> '.join(cycle)}")
        state[n] = 1
        for d in deps[n]:
            visit(d, [*path, n])
        state[n] = 2
        done.append(n)

    for n in names:
        visit(n, [])
    return done


def _ancestors(name: str, deps: Mapping[str, tuple[str, ...]]) -> set[str]:
    seen: set[str] = set()
    stack = list(deps[name])
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(deps[n])
    return seen


__all__ = ["WIRE_SAGA", "Saga", "Step", "StepContext", "StepFn", "StepOp"]
