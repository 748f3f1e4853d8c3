"""The native API's request bodies. Pydantic refuses bad input with a 422 whose
``detail`` names the field (``["body", "steps", 0, "action"]``), before anything
is written. The fields are ``_fields``' types, the ones DTM's API takes too."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from .._bounds import MAX_TITLE
from ._fields import (
    MAX_STEPS,
    Attempts,
    BranchId,
    Gid,
    Headers,
    Interval,
    RequestTimeout,
    Seconds,
    Url,
)


class RetryIn(BaseModel):
    """How an op is retried after an unknown outcome (see ``legato.RetryPolicy``)."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: Attempts = 5
    backoff: Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)] = 0.1
    max_backoff: Annotated[float, Field(ge=0, le=86400, allow_inf_nan=False)] = 10.0
    multiplier: Annotated[float, Field(ge=1, le=100, allow_inf_nan=False)] = 2.0
    jitter: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.2
    timeout: Seconds | None = Field(None, description="bounds each attempt (s)")
    ongoing_interval: Interval = Field(1.0, description="asking again after a 'not yet' (s)")


class StepIn(BaseModel):
    """One saga step: an action URL, optionally a compensation URL."""

    model_config = ConfigDict(extra="forbid")

    name: BranchId | None = Field(
        None, description="the branch id sent to the participant; default 01, 02, ..."
    )
    action: Url
    compensate: Url | None = None
    payload: Any = Field(None, description="JSON sent as the body of both ops")
    depends_on: Annotated[list[BranchId], Field(max_length=MAX_STEPS)] | None = Field(
        None, description="run once these steps have succeeded (a graph); default: in order"
    )
    pivot: bool = False
    timeout: RequestTimeout | None = Field(None, description="request timeout of each call (s)")
    retry: RetryIn | None = None
    compensate_retry: RetryIn | None = None
    headers: Headers = Field(default_factory=dict)


class SagaIn(BaseModel):
    """Submit a saga: it is written to the log, then driven; idempotent by ``gid``."""

    model_config = ConfigDict(extra="forbid")

    gid: Gid | None = None
    name: Annotated[str, Field(min_length=1, max_length=MAX_TITLE)] | None = Field(
        None,
        description="a readable name, for lists and the dashboard; default: made from the "
        "steps' names or their URLs' last path parts",
    )
    steps: Annotated[list[StepIn], Field(min_length=1, max_length=MAX_STEPS)]
    timeout_to_fail: Seconds | None = None
    headers: Headers = Field(
        default_factory=dict, description="sent with every call of this transaction"
    )
    wait: bool = Field(False, description="answer once the saga has ended (or wait_timeout)")
    wait_timeout: Seconds = 30.0


class ForceEndIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Annotated[str, Field(pattern="^(succeeded|failed)$")]


class SignalIn(BaseModel):
    """A signal's value, and an id that makes sending it idempotent."""

    model_config = ConfigDict(extra="forbid")

    value: Annotated[
        Any,
        Field(
            description="JSON handed to the workflow waiting for it (default true; a wait that "
            "times out gets null)"
        ),
    ] = True
    id: Annotated[
        BranchId | None,
        Field(description="the same id again is kept once (default: a new one each time)"),
    ] = None


class TccIn(BaseModel):
    """Begin a TCC transaction: prepared until submitted, aborted, or timed out."""

    model_config = ConfigDict(extra="forbid")

    gid: Gid | None = None
    timeout_to_fail: Seconds = Field(35.0, description="cancelled if still prepared after (s)")
    headers: Headers = Field(default_factory=dict)


class BranchIn(BaseModel):
    """Register a TCC branch (then call its try yourself)."""

    model_config = ConfigDict(extra="forbid")

    branch_id: BranchId | None = Field(None, description="default: 01, 02, ... in order")
    confirm: Url
    cancel: Url
    payload: Any = Field(None, description="JSON sent as the body of confirm and cancel")
    timeout: RequestTimeout | None = Field(None, description="request timeout of each call (s)")


class EndIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wait: bool = False
    wait_timeout: Seconds = 30.0


class XaIn(BaseModel):
    """Begin an XA transaction: prepared until submitted (commit), aborted, or timed out."""

    model_config = ConfigDict(extra="forbid")

    gid: Gid | None = None
    timeout_to_fail: Seconds = Field(35.0, description="rolled back if still prepared after (s)")


class XaBranchIn(BaseModel):
    """Register an XA branch a service has prepared in its own database: phase 2 is a
    POST to ``url`` with ``op=commit`` or ``op=rollback`` (and gid, branch_id)."""

    model_config = ConfigDict(extra="forbid")

    branch_id: BranchId | None = Field(None, description="default: 01, 02, ... in order")
    url: Url
    timeout: RequestTimeout | None = Field(None, description="request timeout of each call (s)")
