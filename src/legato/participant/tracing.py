"""The participant's side of a trace: continue the coordinator's.

The coordinator sends each op attempt's span context with the call (a W3C
``traceparent`` header) or the message (its headers). A service that wraps its
ASGI app with :func:`instrument` handles every request in a server span that is
that attempt span's child, carrying the op's gid, branch and op as attributes,
so the booking's whole trace reads coordinator -> attempt -> service -> its SQL::

    from legato.participant.tracing import instrument
    from legato.observe.tracing import configure

    configure("flights")          # OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set
    app = instrument(Starlette(routes=...))

A consumer of messages (an inbox handler) runs inside :func:`message_span`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from ..observe.tracing import continued

_QUERY_FIELDS = {"gid": "legato.gid", "branch_id": "legato.branch", "op": "legato.op"}


def _request_hook(span: trace.Span, scope: dict[str, Any]) -> None:
    if not span.is_recording():
        return
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    for name, attribute in _QUERY_FIELDS.items():
        values = query.get(name)
        if values:
            span.set_attribute(attribute, values[0])
    for key, value in scope.get("headers", ()):
        if key == b"legato-attempt":
            with contextlib.suppress(ValueError):
                span.set_attribute("legato.attempt", int(value))


def instrument(app: Any, *, excluded_urls: str = "/health") -> Any:
    """``app`` (any ASGI app) wrapped so that each request continues the caller's trace."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(
        app,
        excluded_urls=excluded_urls,
        server_request_hook=_request_hook,
        exclude_spans=["send", "receive"],
    )


@contextlib.contextmanager
def message_span(
    topic: str, headers: Mapping[str, str], name: str | None = None
) -> Iterator[trace.Span]:
    """A consumer span for one message, the child of the span that published it."""
    tracer = trace.get_tracer("legato.participant")
    attributes = {"messaging.destination.name": topic}
    if "gid" in headers:
        attributes["legato.gid"] = headers["gid"]
    with tracer.start_as_current_span(
        name or f"process {topic}",
        context=continued(headers),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield span
