"""The native API's request bodies. Pydantic refuses bad input with a 422 whose
``detail`` names the field (``["body", "steps", 0, "action"]``), before anything
is written."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http(s) URL, not {value!r}")
    return value


def branch_id(value: str) -> str:
    if not NAME.match(value):
        raise ValueError("a branch id is 1-64 letters, digits, '_', '.', ':' or '-'")
    return value


Seconds = Annotated[float, Field(gt=0, le=86400)]
BranchId = Annotated[str, AfterValidator(branch_id)]
Headers = dict[
    Annotated[str, Field(min_length=1, max_length=256)], Annotated[str, Field(max_length=4096)]
]


class RetryIn(BaseModel):
    """How an op is retried after an unknown outcome (see ``legato.RetryPolicy``)."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(5, ge=1, le=10_000)
    backoff: float = Field(0.1, ge=0, le=3600)
    max_backoff: float = Field(10.0, ge=0, le=86400)
    multiplier: float = Field(2.0, ge=1, le=100)
    jitter: float = Field(0.2, ge=0, le=1)
    timeout: Seconds | None = Field(None, description="bounds each attempt (s)")
    ongoing_interval: Seconds = Field(1.0, description="asking again after a 'not yet' (s)")


class StepIn(BaseModel):
    """One saga step: an action URL, optionally a compensation URL."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        None, description="the branch id sent to the participant; default 01, 02, ..."
    )
    action: str
    compensate: str | None = None
    payload: Any = Field(None, description="JSON sent as the body of both ops")
    depends_on: list[str] | None = Field(
        None, description="run once these steps have succeeded (a graph); default: in order"
    )
    pivot: bool = False
    timeout: Seconds | None = Field(None, description="request timeout of each call (s)")
    retry: RetryIn | None = None
    compensate_retry: RetryIn | None = None
    headers: Headers = Field(default_factory=dict)

    @field_validator("action", "compensate")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else http_url(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not NAME.match(value):
            raise ValueError("a step name is 1-64 letters, digits, '_', '.', ':' or '-'")
        return value


class SagaIn(BaseModel):
    """Submit a saga: it is written to the log, then driven; idempotent by ``gid``."""

    model_config = ConfigDict(extra="forbid")

    gid: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    steps: Annotated[list[StepIn], Field(min_length=1, max_length=200)]
    timeout_to_fail: Seconds | None = None
    headers: Headers = Field(
        default_factory=dict, description="sent with every call of this transaction"
    )
    wait: bool = Field(False, description="answer once the saga has ended (or wait_timeout)")
    wait_timeout: Seconds = 30.0


class ForceEndIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Annotated[str, Field(pattern="^(succeeded|failed)$")]


class TccIn(BaseModel):
    """Begin a TCC transaction: prepared until submitted, aborted, or timed out."""

    model_config = ConfigDict(extra="forbid")

    gid: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    timeout_to_fail: Seconds = Field(35.0, description="cancelled if still prepared after (s)")
    headers: Headers = Field(default_factory=dict)


class BranchIn(BaseModel):
    """Register a TCC branch (then call its try yourself)."""

    model_config = ConfigDict(extra="forbid")

    branch_id: BranchId | None = Field(None, description="default: 01, 02, ... in order")
    confirm: str
    cancel: str
    payload: Any = Field(None, description="JSON sent as the body of confirm and cancel")
    timeout: Seconds | None = Field(None, description="request timeout of each call (s)")

    @field_validator("confirm", "cancel")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)


class EndIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wait: bool = False
    wait_timeout: Seconds = 30.0


class XaIn(BaseModel):
    """Begin an XA transaction: prepared until submitted (commit), aborted, or timed out."""

    model_config = ConfigDict(extra="forbid")

    gid: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    timeout_to_fail: Seconds = Field(35.0, description="rolled back if still prepared after (s)")


class XaBranchIn(BaseModel):
    """Register an XA branch a service has prepared in its own database: phase 2 is a
    POST to ``url`` with ``op=commit`` or ``op=rollback`` (and gid, branch_id)."""

    model_config = ConfigDict(extra="forbid")

    branch_id: BranchId | None = Field(None, description="default: 01, 02, ... in order")
    url: str
    timeout: Seconds | None = Field(None, description="request timeout of each call (s)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)
