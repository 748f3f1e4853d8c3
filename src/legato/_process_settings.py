"""What any process using Legato reads from its environment, library or service,
parsed once per process into one typed object.

Where its spans go (OpenTelemetry's ``OTEL_*``), where the workers behind one
port share their metrics (``PROMETHEUS_MULTIPROC_DIR``), its log lines' format
(``LEGATO_LOG_FORMAT``) and the fault points a crash test armed
(``LEGATO_FAULTS``). The modules that use them (``observe``, ``_faults``) sit
below the coordinator, so this sits below them, with nothing but the standard
library; ``legato.settings``, the edges' settings, shows it beside its own. The
modules take these values as arguments, with this process's as the default.

>>> ProcessSettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318"}).traces_endpoint
'http://otel:4318/v1/traces'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Literal

LogFormat = Literal["auto", "json", "text"]


@dataclass(frozen=True)
class ProcessSettings:
    """Each variable keeps the name and meaning users and tools give it."""

    traces_endpoint: str | None = None
    """The OTLP/HTTP URL spans are exported to: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
    as it is, else ``OTEL_EXPORTER_OTLP_ENDPOINT`` with ``/v1/traces`` appended (the
    OTLP exporter's rule); None: no export."""
    service_name: str | None = None
    """``OTEL_SERVICE_NAME``: the service a process's spans are from."""
    otel_disabled: bool = False
    """``OTEL_SDK_DISABLED=true``: OpenTelemetry is off, whatever else is set."""
    metrics_dir: str | None = None
    """``PROMETHEUS_MULTIPROC_DIR``: where the workers behind one port share their
    metrics (prometheus-client's multiprocess mode); None: not shared."""
    log_format: LogFormat = "auto"
    """``LEGATO_LOG_FORMAT``: ``json``, ``text``, or ``auto`` (text on a terminal)."""
    faults: tuple[tuple[str, int], ...] = ()
    """``LEGATO_FAULTS``, a crash test's armed fault points: ``(point or prefix, hit)``
    pairs, from ``after_op.compensate@7,xa`` (``legato._faults``)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProcessSettings:
        """The settings named in ``env`` (default ``os.environ``)."""
        env = os.environ if env is None else env
        traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if traces is None and base:
            traces = f"{base.removesuffix('/')}/v1/traces"
        wanted = env.get("LEGATO_LOG_FORMAT", "").lower()
        return cls(
            traces_endpoint=traces,
            service_name=env.get("OTEL_SERVICE_NAME") or None,
            otel_disabled=env.get("OTEL_SDK_DISABLED", "").lower() == "true",
            metrics_dir=env.get("PROMETHEUS_MULTIPROC_DIR") or None,
            log_format="json" if wanted == "json" else "text" if wanted == "text" else "auto",
            faults=_faults(env.get("LEGATO_FAULTS", "")),
        )


def _faults(text: str) -> tuple[tuple[str, int], ...]:
    specs = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, count = part.partition("@")
        specs.append((name, int(count or "1")))
    return tuple(specs)


@cache
def process_settings() -> ProcessSettings:
    """This process's :class:`ProcessSettings`, read once."""
    return ProcessSettings.from_env()
