"""What a workflow is made of, apart from its body's runtime: its definition
(``@legato.workflow``), the calls its steps make (a callable with its arguments, a
saga, an XA branch), and the journal's form of them: an argument digest, and a
compensation or commit op kept so that any coordinator can run it after a crash (an
import path and JSON arguments, or an ``HttpCall``/``BrokerCall``)."""

from __future__ import annotations

import contextvars
import functools
import hashlib
import importlib
import inspect
import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from .. import _json
from .._errors import DefinitionError, PayloadError, WorkflowError
from .._model import DEFAULT_ACTION_RETRY, DEFAULT_COMPENSATE_RETRY, Json, OpName, RetryPolicy
from ..transports.broker import BrokerCall
from ..transports.http import HttpCall
from ..transports.local import LocalCall, StepContext

# -- the definition ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """A workflow: its name, its version, and its body (``async def body(wf, *args)``).
    Made by ``@legato.workflow``; started by ``Coordinator.start_workflow``."""

    name: str
    version: str
    fn: Callable[..., Awaitable[Any]]
    timeout_to_fail: float | None = None
    retry: RetryPolicy = DEFAULT_ACTION_RETRY
    compensate_retry: RetryPolicy = DEFAULT_COMPENSATE_RETRY

    @property
    def key(self) -> str:
        """What the log names its transactions by: ``name@version`` (a coordinator claims
        only the versions it has)."""
        return f"{self.name}@{self.version}"

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise WorkflowError(
            f"workflow {self.name!r} is started with coordinator.start_workflow(...), not called"
        )


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-~+=]{0,63}")


def workflow(
    name: str | None = None,
    *,
    version: str = "1",
    timeout_to_fail: float | None = None,
    retry: RetryPolicy | None = None,
    compensate_retry: RetryPolicy | None = None,
) -> Callable[[Callable[..., Awaitable[Any]]], WorkflowDefinition]:
    """Make ``async def body(wf: legato.Workflow, *args)`` a durable workflow.

    ``version`` names this code: a workflow runs only on a coordinator that has its
    version (change it when the body changes what it does at a position, or use
    ``wf.patched``). ``retry`` and ``compensate_retry`` are the steps' defaults.
    """

    def make(fn: Callable[..., Awaitable[Any]]) -> WorkflowDefinition:
        if not inspect.iscoroutinefunction(fn):
            raise DefinitionError(f"a workflow is an async def, not {fn!r}")
        wf_name = name or fn.__name__
        for what, value in (("name", wf_name), ("version", version)):
            if not isinstance(value, str) or not _NAME.fullmatch(value) or "@" in value:
                raise DefinitionError(
                    f"a workflow's {what} is 1-64 of letters, digits and _ . : - ~ + =, "
                    f"not {value!r}"
                )
        if timeout_to_fail is not None and not (
            isinstance(timeout_to_fail, int | float) and 0 < timeout_to_fail < math.inf
        ):
            raise DefinitionError(f"timeout_to_fail must be positive, not {timeout_to_fail!r}")
        return WorkflowDefinition(
            wf_name,
            version,
            fn,
            timeout_to_fail,
            retry or DEFAULT_ACTION_RETRY,
            compensate_retry or DEFAULT_COMPENSATE_RETRY,
        )

    return make


@dataclass(frozen=True, slots=True)
class Call:
    """A callable with its arguments: ``legato.call(cancel_room, booking_id)`` as a
    step's ``compensate=`` when it takes other arguments than the step's."""

    fn: Any
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SagaCall:
    """A declarative saga run as a workflow step (``wf.saga``): submitted as a
    transaction of its own, ``gid``, and waited for."""

    saga: Any
    payload: Json = None
    gid: str = ""

    @property
    def target(self) -> str:
        return f"saga {getattr(self.saga, 'name', '?')}"


@dataclass(frozen=True, slots=True)
class XaStep:
    """A workflow's XA branch (``wf.xa``): ``fn(conn)`` run in a two-phase transaction on
    the coordinator's resource ``resource``, then prepared; committed once the workflow
    has succeeded, rolled back if it rolls back."""

    resource: str
    fn: Any


@dataclass(frozen=True, slots=True)
class XaEnd:
    """Phase 2 of a workflow's XA branch: ``op`` is ``commit`` or ``rollback``."""

    resource: str
    op: OpName


def call(fn: Any, /, *args: Any, **kwargs: Any) -> Call:
    """``fn`` with its arguments, for a step's ``compensate=``."""
    return Call(fn, args, kwargs)


def step(fn: Callable[..., Any] | None = None, /, *, in_thread: bool = True) -> Any:
    """Mark a workflow step's function: ``@legato.step(in_thread=False)`` runs a quick
    sync one on the event loop instead of a step thread (as a saga step's
    ``in_thread=False``); bare ``@legato.step`` changes nothing but says what it is."""

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(f):
            raise DefinitionError(f"@legato.step marks a function, not {f!r}")
        f.legato_in_thread = in_thread  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


# -- the current step, for a step's code ------------------------------------------------

_current: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar(
    "legato_step", default=None
)


def current_step() -> StepContext:
    """The attempt a workflow step (or compensation) is running in: its gid, branch,
    attempt and idempotency key, and for a compensation the step's output, if any."""
    ctx = _current.get()
    if ctx is None:
        raise WorkflowError("current_step() is called from a workflow step's code only")
    return ctx


class _Bound:
    """A step's callable with its arguments, called as a ``LocalCall`` is."""

    __slots__ = ("args", "fn", "kwargs")
    __hash__ = None  # type: ignore[assignment]  # made per call: never a cache's key
    legato_async = False  # what the local transport would otherwise ask inspect

    def __init__(self, fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]):
        self.fn, self.args, self.kwargs = fn, tuple(args), dict(kwargs)

    def __call__(self, ctx: StepContext) -> Any:
        token = _current.set(ctx)
        try:
            return self.fn(*self.args, **self.kwargs)
        finally:
            _current.reset(token)


class _AsyncBound(_Bound):
    __slots__ = ()
    legato_async = True

    async def __call__(self, ctx: StepContext) -> Any:
        token = _current.set(ctx)
        try:
            return await self.fn(*self.args, **self.kwargs)
        finally:
            _current.reset(token)


def bound(fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> _Bound:
    try:
        is_async = async_fn(fn)
    except TypeError:  # an unhashable callable object
        is_async = async_fn.__wrapped__(fn)
    return (_AsyncBound if is_async else _Bound)(fn, args, kwargs)


@functools.lru_cache(maxsize=4096)
def async_fn(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )


def bound_conn(
    fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> Callable[[Any], Any]:
    """``fn`` with its arguments after the connection: what an XA branch runs."""

    def branch(conn: Any) -> Any:
        return fn(conn, *args, **kwargs)

    return branch


def import_path(fn: Any) -> str | None:
    """``module:qualname`` of a module-level function (or a static method of a
    module-level class) that imports back to the same object; None for a lambda, a
    closure, a bound method..."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return None
    try:
        found = resolve(f"{module}:{qualname}")
    except (ImportError, AttributeError):
        return None
    return f"{module}:{qualname}" if found is fn or getattr(found, "__func__", None) is fn else None


def resolve(path: str) -> Any:
    module, _, qualname = path.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def digest_of(value: Json) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def args_digest(args: Sequence[Any], kwargs: Mapping[str, Any], what: str) -> str:
    """A digest of a step's arguments; arguments JSON cannot carry are refused, naming
    what is wrong (the fast path encodes once; the slow one says why it failed)."""
    try:
        text = _DIGEST.encode([args, kwargs])
        text.encode()
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError):
        jsonable([list(args), dict(kwargs)], what)
        raise
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


_DIGEST = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def jsonable(value: Any, what: str) -> Json:
    try:
        return _json.check(value, what=what)
    except PayloadError as exc:
        raise PayloadError(f"{exc} (a workflow journals it, so it must be JSON)") from None


def name_of(fn: Any) -> str:
    if isinstance(fn, XaStep):
        raw = getattr(fn.fn, "__name__", None) or f"xa:{fn.resource}"
    elif isinstance(fn, SagaCall):
        raw = f"saga:{getattr(fn.saga, 'name', 'saga')}"
    elif isinstance(fn, HttpCall):
        raw = fn.url.rstrip("/").rsplit("/", 1)[-1] or "http"
    elif isinstance(fn, BrokerCall):
        raw = f"publish:{fn.topic}"
    else:
        raw = getattr(fn, "__name__", None) or type(fn).__name__
    name = re.sub(r"[^A-Za-z0-9_.:\-~+=]", "_", raw).lstrip("@")[:48]
    return name or "step"


def target_of(fn: Any) -> str:
    if isinstance(fn, XaEnd):
        return f"xa {fn.op} on {fn.resource}"
    if isinstance(fn, XaStep):
        return f"xa prepare on {fn.resource}"
    if isinstance(fn, SagaCall):
        return fn.target
    if isinstance(fn, HttpCall):
        return fn.target
    if isinstance(fn, BrokerCall):
        return f"{fn.broker}:{fn.topic}"
    module, qualname = getattr(fn, "__module__", ""), getattr(fn, "__qualname__", None)
    return f"{module}.{qualname}" if qualname else type(fn).__name__


def undo_spec(undo: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Json:
    """A compensation as the journal keeps it, so that any coordinator can run it."""
    if isinstance(undo, XaEnd):
        return {"xa": {"resource": undo.resource, "op": str(undo.op)}}
    if isinstance(undo, HttpCall):
        return {"http": undo.to_json()}
    if isinstance(undo, BrokerCall):
        return {"broker": {"broker": undo.broker, "topic": undo.topic, "body": undo.body,
                           "key": undo.key}}  # fmt: skip
    if isinstance(undo, Call):
        fn, args, kwargs = undo.fn, undo.args, undo.kwargs
        if isinstance(fn, HttpCall | BrokerCall):
            return undo_spec(fn, (), {})
    else:
        fn = undo
    if not callable(fn):
        raise DefinitionError(
            f"compensate= takes a function, an HttpCall or a BrokerCall, not {fn!r}"
        )
    path = import_path(fn)
    if path is None:
        raise DefinitionError(
            f"compensate={fn!r} must be a module-level function (or an HttpCall): a "
            "compensation may have to run in another process, after a crash, found by "
            "its import path"
        )
    return {
        "fn": path,
        "args": jsonable(list(args), "a compensation's arguments"),
        "kwargs": jsonable(dict(kwargs), "a compensation's arguments"),
    }


def undo_call(spec: Mapping[str, Any]) -> object:
    if "xa" in spec:
        return XaEnd(str(spec["xa"]["resource"]), OpName(spec["xa"]["op"]))
    if "http" in spec:
        return HttpCall.from_json(spec["http"])
    if "broker" in spec:
        return BrokerCall(**spec["broker"])
    return LocalCall(bound(resolve(spec["fn"]), spec.get("args") or (), spec.get("kwargs") or {}))


__all__ = [
    "Call",
    "SagaCall",
    "WorkflowDefinition",
    "XaEnd",
    "XaStep",
    "args_digest",
    "async_fn",
    "bound",
    "bound_conn",
    "call",
    "current_step",
    "digest_of",
    "import_path",
    "jsonable",
    "name_of",
    "resolve",
    "step",
    "target_of",
    "undo_call",
    "undo_spec",
    "workflow",
]
