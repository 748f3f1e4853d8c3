"""Tracing with OpenTelemetry: one trace per global transaction.

A transaction's first span (``begin``) is a child of whatever span the caller
is in (an instrumented web request, a test), or a new trace's root. Its
context is kept in the log with the transaction (``options["trace"]``), so
every op attempt, before or after any number of coordinator restarts, is a
span of the same trace, the child of that first span. The attempt's own
context goes to the participant: as ``traceparent`` on an HTTP call, in a
broker message's headers, or as the current span while a Python step runs.

Spans are made through the global tracer provider unless one is given: with
no OpenTelemetry SDK configured none is made at all.
``configure()`` sets the SDK up the way ``legato serve`` does: an OTLP/HTTP
exporter when an endpoint is given or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set
(read once, by ``legato._process_settings``), no exporter otherwise.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._model import Json, TxRecord
from .._process_settings import process_settings

_SCOPE = "legato"


def gid_traceparent(gid: str) -> str:
    """A ``traceparent`` derived from the gid alone, sent when tracing is off: every
    call of one transaction, before and after a restart, then still carries one
    trace id that a participant's logs can be joined on."""
    trace_id = hashlib.blake2b(gid.encode(), digest_size=16).hexdigest()
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


def headers_for(gid: str, context: otel_context.Context | None = None) -> dict[str, str]:
    """The trace headers for a call: ``context``'s span (the current one by default)
    where it is valid, else a ``traceparent`` derived from ``gid``."""
    carrier: dict[str, str] = {}
    inject(carrier, context=context)
    if "traceparent" not in carrier:
        carrier["traceparent"] = gid_traceparent(gid)
    return carrier


class Attempt:
    """One op attempt's span, from its start to its outcome."""

    __slots__ = ("context", "span")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.context = trace.set_span_in_context(span)

    def enter(self) -> object:
        """Make the attempt's span the current one (tasks and threads started meanwhile
        inherit it) until ``leave`` with what this returned."""
        return otel_context.attach(self.context)

    def leave(self, token: object) -> None:
        otel_context.detach(token)  # type: ignore[arg-type]

    def headers(self, gid: str) -> dict[str, str]:
        return headers_for(gid, self.context)

    def end(self, outcome: str, detail: Json) -> None:
        span = self.span
        if span.is_recording():
            span.set_attribute("legato.outcome", outcome)
            if outcome in ("failed", "unknown"):
                message = str(detail)[:500]
                attributes = {"exception.type": outcome, "exception.message": message}
                span.add_event("exception", attributes)
                span.set_status(Status(StatusCode.ERROR, message))
        span.end()


class _Untraced(Attempt):
    """An attempt while no tracer records anything: no span to make or make current.
    Its calls still carry a ``traceparent``: the transaction's stored trace id, if it
    has one, else the one derived from its gid."""

    __slots__ = ("trace_id",)

    def __init__(self, trace_id: str | None) -> None:
        self.trace_id = trace_id

    def enter(self) -> object:
        return None

    def leave(self, token: object) -> None:
        pass

    def headers(self, gid: str) -> dict[str, str]:
        if self.trace_id is None:
            return {"traceparent": gid_traceparent(gid)}
        return {"traceparent": f"00-{self.trace_id}-{secrets.token_hex(8)}-01"}

    def end(self, outcome: str, detail: Json) -> None:
        pass


class Tracing:
    """Makes the coordinator's spans: through ``provider``, or the global provider once
    one is set (until then, nothing is made at all: a transaction costs no span)."""

    def __init__(self, provider: trace.TracerProvider | None = None) -> None:
        from .._version import __version__

        self.tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=provider)
        self._own = provider is not None

    def on(self) -> bool:
        return self._own or active()

    def begin(self, tx: TxRecord) -> None:
        """The transaction's first span, ended at once; its context goes in
        ``tx.options['trace']`` to be written with the transaction."""
        if not self.on() and not trace.get_current_span().get_span_context().is_valid:
            return  # nothing records spans, and the caller is in no trace
        attributes = {"legato.gid": tx.gid, "legato.mode": str(tx.mode), "legato.name": tx.name}
        with self.tracer.start_as_current_span(
            f"legato {tx.mode} {tx.name}", kind=SpanKind.INTERNAL, attributes=attributes
        ):
            carrier: dict[str, str] = {}
            inject(carrier)
        if carrier.get("traceparent"):
            tx.options["trace"] = carrier

    def attempt(self, tx: TxRecord, branch: str, op: str, attempt: int, *, remote: bool) -> Attempt:
        """Start the span of one op attempt, a child of the transaction's first span."""
        stored = tx.options.get("trace")
        if not self.on():
            return _Untraced(stored_trace_id(stored))
        parent = _stored_context(stored)
        span = self.tracer.start_span(
            f"{op} {branch}",
            context=parent,
            kind=SpanKind.CLIENT if remote else SpanKind.INTERNAL,
            attributes={
                "legato.gid": tx.gid,
                "legato.mode": str(tx.mode),
                "legato.branch": branch,
                "legato.op": op,
                "legato.attempt": attempt,
            },
        )
        return Attempt(span)

    def ended(self, tx: TxRecord, status: str, reason: str | None) -> None:
        """A short span marking the transaction's end, in its trace."""
        if not self.on():
            return
        parent = _stored_context(tx.options.get("trace"))
        attributes: dict[str, Any] = {"legato.gid": tx.gid, "legato.status": status}
        if reason:
            attributes["legato.reason"] = reason[:500]
        span = self.tracer.start_span(
            f"legato {tx.mode} {tx.name} {status}", context=parent, attributes=attributes
        )
        if status == "failed" and span.is_recording():
            span.set_status(Status(StatusCode.ERROR, (reason or "")[:500]))
        span.end()


def _stored_context(stored: Json) -> otel_context.Context:
    """The context kept in the log; an empty one (so a new trace) when there is none.
    Never the caller's current context: the op runs in the transaction's trace."""
    if isinstance(stored, Mapping):
        return extract({str(k): str(v) for k, v in stored.items()}, context=otel_context.Context())
    return otel_context.Context()


def stored_trace_id(stored: Json) -> str | None:
    """The trace id of a transaction's stored trace context (``options["trace"]``)."""
    if isinstance(stored, Mapping):
        parts = str(stored.get("traceparent", "")).split("-")
        if len(parts) == 4 and len(parts[1]) == 32:
            return parts[1]
    return None


def continued(headers: Mapping[str, str]) -> otel_context.Context:
    """The context a participant continues from a call's or a message's headers."""
    lowered = {k.lower(): v for k, v in headers.items()}
    return extract(lowered)


def configure(service_name: str | None = None, *, endpoint: str | None = None) -> bool:
    """Set up the OpenTelemetry SDK as the global tracer provider, exporting over
    OTLP/HTTP to ``endpoint`` (the traces URL; default: this process's, from
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` or its traces variant), as ``service_name``
    (default: ``OTEL_SERVICE_NAME``, else ``legato``). Returns whether an exporter
    was configured: not without an endpoint, nor with ``OTEL_SDK_DISABLED=true``; a
    provider already set is kept."""
    env = process_settings()
    endpoint = endpoint or env.traces_endpoint
    if not endpoint or env.otel_disabled:
        return False
    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        return False  # the application configured its own
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = service_name or env.service_name or "legato"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    return True


_checked = {"active": False, "next": 0.0}


def active() -> bool:
    """Is a real tracer provider (an SDK's) set globally? Once one is, it stays set; until
    then the answer is looked up again at most every 0.2 s (the lookup reads the
    environment: too dear for every op attempt)."""
    if _checked["active"]:
        return True
    now = time.monotonic()
    if now < _checked["next"]:
        return False
    is_set = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    _checked["active"], _checked["next"] = is_set, now + 0.2
    return is_set


def flush(timeout_ms: int = 5000) -> None:
    """Export the spans still buffered by the global SDK provider, if one is set."""
    provider = trace.get_tracer_provider()
    force = getattr(provider, "force_flush", None)
    if callable(force):
        force(timeout_ms)


def shutdown() -> None:
    """Flush and stop the global SDK provider, if one is set (at process exit)."""
    provider = trace.get_tracer_provider()
    stop = getattr(provider, "shutdown", None)
    if callable(stop):
        stop()
