"""The fields both HTTP APIs take, typed once: the native API's bodies and DTM's are
built from these, so a gid, a header, a URL or a number of seconds is held to the
same bound whichever API it comes through (``legato._bounds`` states the rules).

The checks that depend on the server's settings (a payload's size, Legato's own
token in a header) are :func:`check_payload` and :func:`check_no_token`, called
by both APIs' handlers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field

from .. import _bounds, _json
from .._errors import DefinitionError

T = TypeVar("T")

MAX_STEPS = 200
MAX_RETRY_ATTEMPTS = 10_000
MAX_URL = 2048
MAX_TEXT = 4096  # a reason, a custom_data


def _pydantic(check: Callable[[Any], T]) -> Callable[[Any], T]:
    """``check`` raising ValueError, as pydantic wants, with the field name left to
    pydantic's ``loc`` (``_bounds``' messages start with it)."""

    def run(value: Any) -> T:
        try:
            return check(value)
        except DefinitionError as exc:
            raise ValueError(str(exc).split(": ", 1)[-1]) from None

    return run


def http_url(value: str) -> str:
    """An absolute http(s) URL with a host, at most 2048 characters, nothing unsafe."""
    if len(value) > MAX_URL:
        raise ValueError(f"a URL is at most {MAX_URL} characters")
    # isprintable() is False for every blank and control character but the space
    if " " in value or not value.isprintable():
        raise ValueError("a URL holds no blanks or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL, not {value[:100]!r}")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"{value[:100]!r}: {exc}") from None
    return value


def _zero_is_unset(value: Any) -> Any:
    # DTM's clients send 0 for "not set" (Go's zero value)
    return None if value == 0 and not isinstance(value, bool) else value


Gid = Annotated[str, AfterValidator(_pydantic(_bounds.check_gid))]
BranchId = Annotated[str, AfterValidator(_pydantic(_bounds.check_branch_id))]
Headers = Annotated[dict[str, str], AfterValidator(_pydantic(_bounds.check_headers))]
HeaderName = Annotated[str, Field(min_length=1, max_length=_bounds.HEADER_NAME_MAX)]
Url = Annotated[str, AfterValidator(http_url)]
Seconds = Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)]
Interval = Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)]
RequestTimeout = Annotated[float, Field(gt=0, lt=3600, allow_inf_nan=False)]
Attempts = Annotated[int, Field(ge=1, le=MAX_RETRY_ATTEMPTS)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]

# DTM's numbers: 0 means "not set"
DtmSeconds = Annotated[Seconds | None, BeforeValidator(_zero_is_unset)]
DtmInterval = Annotated[Interval | None, BeforeValidator(_zero_is_unset)]
DtmRequestTimeout = Annotated[RequestTimeout | None, BeforeValidator(_zero_is_unset)]
DtmAttempts = Annotated[Attempts | None, BeforeValidator(_zero_is_unset)]


def check_payload(value: Any, limit: int, field: str) -> None:
    """Refuse a payload (one op's body) larger than ``limit`` bytes as JSON."""
    if value is None:
        return
    if isinstance(value, str):
        size = len(value.encode("utf-8", "surrogatepass"))
    else:
        size = len(_json.compact(value).encode())
    if size > limit:
        raise DefinitionError(
            f"{field}: {size} bytes, and a payload is at most {limit} (--max-payload-bytes)"
        )


def check_no_token(headers: Mapping[str, str], token: str | None, field: str) -> None:
    """Legato's own API token is never stored nor passed on to a participant."""
    if not token:
        return
    wanted = token.encode()
    for name, value in headers.items():
        if wanted in value.encode("utf-8", "replace"):
            raise DefinitionError(
                f"{field}.{name}: carries Legato's own API token, which is never passed on "
                "to a participant"
            )
