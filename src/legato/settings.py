"""Legato's configuration, parsed once per process into typed objects.

:class:`Settings` are those of ``legato serve`` and ``legato dashboard``. Each is
a flag of the command and an environment variable ``LEGATO_<NAME>``
(``max_body_bytes`` -> ``LEGATO_MAX_BODY_BYTES``); a flag wins. The command
validates them before it starts anything (a bad value is refused with its name),
then hands them to its worker processes through the environment, where
:meth:`Settings.from_env` reads them back.

>>> Settings.from_env({"LEGATO_MAX_BODY_BYTES": "2MiB"}).max_body_bytes
2097152

:class:`ProcessSettings` are what any process using Legato reads, serving or not
(OpenTelemetry's ``OTEL_*``, ``PROMETHEUS_MULTIPROC_DIR``, ``LEGATO_LOG_FORMAT``,
``LEGATO_FAULTS``). The layers below the coordinator read them, so they are
defined below them, in ``legato._process_settings``, and shown here. These two
modules and the command line are the only places Legato reads its environment.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._errors import SettingsError
from ._moments import age
from ._process_settings import LogFormat
from ._process_settings import ProcessSettings as ProcessSettings
from ._process_settings import process_settings as process_settings

KiB = 1024
MiB = 1024 * KiB

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": KiB, "m": MiB, "g": 1024 * MiB}

Bytes = Annotated[int, Field(ge=1, le=1024 * MiB)]
Seconds = Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)]
Age = Annotated[float, Field(gt=0, le=3650 * 86400, allow_inf_nan=False)]
"""A span up to ten years: seconds, or ``90m``, ``12h``, ``7d`` from the environment."""


def parse_size(text: str | int) -> int:
    """Bytes from ``1048576``, ``512k``, ``1MiB`` or ``2 MB`` (powers of 1024)."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a size such as 1048576, 512k or 1MiB")
    return int(float(m.group(1)) * _UNITS[m.group(2)[:1].lower()])


class Settings(BaseModel):
    """Every setting, with its default (see the README's "Security model" and "The
    coordinator service" for what each guards)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- the coordinator ------------------------------------------------------------
    log: str = "sqlite:///legato.db"
    owner: str | None = None
    request_timeout: Seconds = 10.0
    lease: Annotated[float, Field(ge=1, le=3600, allow_inf_nan=False)] = 15.0
    grace: Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)] = 10.0
    """Seconds a stop (SIGTERM) lets the ops in flight finish before it cuts them."""
    brokers: dict[str, str] = Field(default_factory=dict)
    retention: Age | None = None
    alert_webhook: str | None = None
    log_level: str = "INFO"
    log_format: LogFormat = "auto"
    xa_namespace: str | None = None
    """The namespace of the coordinator's XA branches (default: from its log's deployment)."""

    # -- who may do what --------------------------------------------------------------
    api_token: str | None = Field(None, repr=False)
    """Guards every change, and every read of payloads, outputs and errors."""
    open_reads: bool = False
    """Reads need no token (for a trusted network); header values stay hidden."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses whose X-Forwarded-For / -Proto / -Host are believed (none by default)."""
    allowed_origins: tuple[str, ...] = ()
    """Other sites' origins whose pages may call the JSON API (none by default)."""
    participants: tuple[str, ...] = ()
    """host:port patterns a participant URL must match (empty: any)."""

    # -- limits -----------------------------------------------------------------------
    max_body_bytes: Bytes = 1 * MiB
    max_json_depth: Annotated[int, Field(ge=2, le=100)] = 32
    max_payload_bytes: Bytes = 256 * KiB
    max_page_bytes: Bytes = 4 * MiB
    max_answer_bytes: Bytes = 1 * MiB
    header_timeout: Seconds = 10.0
    body_timeout: Seconds = 30.0
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 1000

    @field_validator(
        "max_body_bytes", "max_payload_bytes", "max_page_bytes", "max_answer_bytes", mode="before"
    )
    @classmethod
    def _size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("retention", mode="before")
    @classmethod
    def _age(cls, value: Any) -> Any:
        return age(value) if isinstance(value, str) else value

    @field_validator("xa_namespace")
    @classmethod
    def _xa_namespace(cls, value: str | None) -> str | None:
        from .participant.xa import check_namespace

        return None if value is None else check_namespace(value, "value")

    @field_validator("api_token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if not value:
            return None
        if len(value) > 512 or not re.fullmatch(r"[\x21-\x7e]+", value):
            # a header carries it: a blank, a control character or a non-ASCII letter
            # would never compare equal to what a client can send
            raise ValueError("the API token is 1-512 printable ASCII characters, no blanks")
        return value

    @field_validator("trusted_proxies", "allowed_origins", "participants", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @field_validator("brokers", mode="before")
    @classmethod
    def _brokers(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("participants")
    @classmethod
    def _participants(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from ._allow import AllowList
        from ._errors import DefinitionError

        try:
            AllowList(value)
        except DefinitionError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"an origin is scheme://host[:port], not {origin!r}")
        return value

    # -- to and from the environment ----------------------------------------------------

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **given: Any) -> Settings:
        """The settings named in ``env`` (default ``os.environ``), overridden by
        ``given``; raises :class:`SettingsError` naming the bad one."""
        env = os.environ if env is None else env
        raw: dict[str, Any] = {}
        for name in cls.model_fields:
            value = env.get(_env_name(name))
            if value is not None and value != "":
                raw[name] = value
        raw.update({k: v for k, v in given.items() if v is not None})
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else "?"
            raise SettingsError(f"setting {name} ({_where(name)}): {first['msg']}") from None
        except ValueError as exc:  # brokers that are not JSON
            raise SettingsError(f"settings: {exc}") from None

    def to_env(self) -> dict[str, str]:
        """The environment that :meth:`from_env` reads these settings back from."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, tuple):
                text = ",".join(value)
            elif isinstance(value, dict):
                text = json.dumps(value)
            elif isinstance(value, bool):
                text = "true" if value else ""
            elif isinstance(value, float) and math.isfinite(value):
                text = repr(value)
            else:
                text = str(value)
            out[_env_name(name)] = text
        return out


def _env_name(field: str) -> str:
    return f"LEGATO_{field.upper()}"


_FLAGS = {
    "participants": "--participant",
    "trusted_proxies": "--trusted-proxy",
    "allowed_origins": "--allowed-origin",
    "brokers": "--broker",
    "api_token": None,  # never a flag: a flag would show in the process list
}


def _where(field: str) -> str:
    """Where a setting comes from: its flag and its environment variable."""
    flag = _FLAGS.get(field, "--" + field.replace("_", "-"))
    return f"{flag} or {_env_name(field)}" if flag else _env_name(field)


@cache
def from_environment() -> Settings:
    """This process's settings, read once (a worker of ``legato serve``)."""
    return Settings.from_env()
