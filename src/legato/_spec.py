"""A portable saga (every op an HTTP call) as JSON, and back.

The spec is stored in the transaction's options, so that any coordinator can
drive the saga from the log alone: the sagas submitted over the coordinator
service's API have no Python definition to register.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ._errors import DefinitionError
from ._model import DEFAULT_ACTION_RETRY, DEFAULT_COMPENSATE_RETRY, Json, RetryPolicy
from .saga import Saga
from .transports.http import HttpCall

SPEC_VERSION = 1
_POLICY_FIELDS = tuple(f.name for f in dataclasses.fields(RetryPolicy))


def _policy_json(policy: RetryPolicy) -> dict[str, Json]:
    # what dataclasses.asdict gives (every field a number or None), without its deep copy
    return {name: getattr(policy, name) for name in _POLICY_FIELDS}


def to_spec(saga: Saga) -> dict[str, Json]:
    if not saga.portable:
        raise DefinitionError(f"saga {saga.name!r} has Python callables: it is not portable")
    saga.plan()
    steps: list[Json] = []
    for s in saga.steps:
        assert isinstance(s.action, HttpCall)
        step: dict[str, Json] = {"name": s.name, "action": s.action.to_json()}
        if isinstance(s.compensate, HttpCall):
            step["compensate"] = s.compensate.to_json()
        if s.depends_on is not None:
            step["depends_on"] = list(s.depends_on)
        if s.pivot:
            step["pivot"] = True
        if s.retry != DEFAULT_ACTION_RETRY:
            step["retry"] = _policy_json(s.retry)
        if s.compensate_retry != DEFAULT_COMPENSATE_RETRY:
            step["compensate_retry"] = _policy_json(s.compensate_retry)
        steps.append(step)
    return {"version": SPEC_VERSION, "name": saga.name, "steps": steps}


def from_spec(spec: Mapping[str, Any]) -> Saga:
    if spec.get("version") != SPEC_VERSION:
        raise DefinitionError(f"unknown saga spec version {spec.get('version')!r}")
    saga = Saga(spec["name"])
    for step in spec["steps"]:
        compensate = step.get("compensate")
        saga.step(
            step["name"],
            action=HttpCall.from_json(step["action"]),
            compensate=HttpCall.from_json(compensate) if compensate else None,
            depends_on=step.get("depends_on"),
            pivot=bool(step.get("pivot", False)),
            retry=RetryPolicy(**step["retry"]) if "retry" in step else DEFAULT_ACTION_RETRY,
            compensate_retry=(
                RetryPolicy(**step["compensate_retry"])
                if "compensate_retry" in step
                else DEFAULT_COMPENSATE_RETRY
            ),
        )
    saga.plan()
    return saga
