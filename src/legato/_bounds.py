"""What an identifier or a header may hold, wherever it enters (DESIGN section 10).

A gid, a branch id (a saga step's name) and a header end up in URLs, in HTTP
headers (``Idempotency-Key: gid/branch/op``), in broker message ids, in XA
xids and in every log backend; a value safe in all of them is checked once,
here, by the library API and by both HTTP APIs alike:

- a **gid** is 1-128 characters, a **branch id** 1-64, of ``ID_CHARS``: ASCII
  letters, digits and ``_ . : - @ ~ + =`` (a uuid, ``order-42``,
  ``tenant:7.order@2``). NUL, blanks, CR/LF, ``/``, ``%``, quotes and non-ASCII
  letters are refused.
- a **header** name is an HTTP token (RFC 9110: letters, digits and
  ``!#$%&'*+-.^_`|~``), at most 256 characters; its value is printable ASCII (a
  blank or a tab inside, no CR, LF or NUL), at most 4096 characters; at most 64
  headers. Names the transport sets itself, or that frame the request
  (``Host``, ``Content-Length``, ``Idempotency-Key``...), are refused.

Each check raises ``DefinitionError`` naming the field.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping

from ._errors import DefinitionError

ID_CHARS = "ASCII letters, digits and _ . : - @ ~ + ="
GID_MAX = 128
BRANCH_MAX = 64
HEADER_NAME_MAX = 256
HEADER_VALUE_MAX = 4096
HEADERS_MAX = 64

_ID = re.compile(r"[A-Za-z0-9_.:@~+=-]+")
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_VALUE = re.compile(r"[\x20-\x7e\t]*")

RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "proxy-authorization",
        "proxy-connection",
        "idempotency-key",
        "legato-attempt",
    }
)
"""Header names a transaction may not set: the transport sets them, or they frame the
request itself (a ``Content-Length`` of the caller's would desynchronise it)."""


def _identifier(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str):
        raise DefinitionError(f"{field}: a string of {ID_CHARS}, not {type(value).__name__}")
    if not 0 < len(value) <= limit:
        raise DefinitionError(
            f"{field}: 1-{limit} characters, not {len(value)}"
            + (f" ({value[:40]!r}...)" if value else "")
        )
    if not _ID.fullmatch(value):
        bad = next(ch for ch in value if not _ID.fullmatch(ch))
        raise DefinitionError(f"{field}: {bad!r} is not allowed; use {ID_CHARS}")
    return value


def check_gid(value: object, field: str = "gid") -> str:
    """``value`` if it is a valid gid (see the module docstring)."""
    return _identifier(value, field, GID_MAX)


def make_gid() -> str:
    """A new gid: a UUIDv7 (RFC 9562) in 32 hex digits, the time in milliseconds first and
    random bits after, so that gids made later sort later.

    The log, and each participant that keys its rows by gid (a barrier, a booking), keep
    gids in B-tree indexes: a random gid (a UUIDv4) lands on any page of them, and each
    commit writes every page it touched. Time-ordered gids land on the last pages, the
    same few for every write of a batch (measured on SQLite: a third of the bytes written
    per saga, half again as many sagas/s, and as many with a million ended transactions
    in the log as with none; bench/log_growth.py). Gids given by the caller are kept.
    """
    unix_ms = time.time_ns() // 1_000_000 & (1 << 48) - 1
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits: 12 for rand_a, 62 for rand_b
    value = (
        unix_ms << 80
        | 0x7 << 76  # the version
        | (rand >> 62 & 0xFFF) << 64
        | 0b10 << 62  # the variant
        | rand & (1 << 62) - 1
    )
    return f"{value:032x}"


def check_branch_id(value: object, field: str = "branch_id") -> str:
    """``value`` if it is a valid branch id or step name (see the module docstring)."""
    return _identifier(value, field, BRANCH_MAX)


def check_header(name: object, value: object, field: str = "headers") -> None:
    """Refuse a header that is not safe to send (see the module docstring)."""
    if not isinstance(name, str) or not _TOKEN.fullmatch(name) or len(name) > HEADER_NAME_MAX:
        raise DefinitionError(
            f"{field}: {name!r} is not a header name (1-{HEADER_NAME_MAX} letters, digits "
            "and !#$%&'*+-.^_`|~)"
        )
    if name.lower() in RESERVED_HEADERS:
        raise DefinitionError(f"{field}.{name}: this header is set by Legato, not by a transaction")
    if not isinstance(value, str):
        raise DefinitionError(f"{field}.{name}: a header value is a string")
    if len(value) > HEADER_VALUE_MAX:
        raise DefinitionError(f"{field}.{name}: at most {HEADER_VALUE_MAX} characters")
    if not _VALUE.fullmatch(value):
        bad = next(ch for ch in value if not _VALUE.fullmatch(ch))
        raise DefinitionError(
            f"{field}.{name}: {bad!r} is not allowed in a header value (printable ASCII only)"
        )


def check_headers(headers: object, field: str = "headers") -> dict[str, str]:
    """A copy of ``headers`` once every one of them is safe to send."""
    if not isinstance(headers, Mapping):
        raise DefinitionError(f"{field}: an object of header names to values")
    if len(headers) > HEADERS_MAX:
        raise DefinitionError(f"{field}: at most {HEADERS_MAX} headers, not {len(headers)}")
    for name, value in headers.items():
        check_header(name, value, field)
    return dict(headers)


def check_seconds(value: object, field: str, *, maximum: float = 86400.0) -> float:
    """A finite positive number of seconds, at most ``maximum``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= maximum
    ):
        raise DefinitionError(f"{field}: a number of seconds in (0, {maximum:g}], not {value!r}")
    return float(value)


MAX_TITLE = 120


def check_title(title: object, field: str = "name") -> str:
    """A transaction's readable name: text of 1 to ``MAX_TITLE`` characters, no control
    characters (it is printed in terminals and lists)."""
    if not isinstance(title, str):
        raise DefinitionError(f"{field}: a transaction's name is text, not {type(title).__name__}")
    text = title.strip()
    if not 1 <= len(text) <= MAX_TITLE:
        raise DefinitionError(f"{field}: a transaction's name is 1 to {MAX_TITLE} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise DefinitionError(f"{field}: a transaction's name has no control characters")
    return text


MAX_CUSTOM_DATA = 4096


def check_custom_data(value: object) -> str:
    """A caller's own text kept with a transaction and shown back as it was given
    (DTM's ``custom_data``): at most ``MAX_CUSTOM_DATA`` characters."""
    if not isinstance(value, str):
        raise DefinitionError(f"custom_data: text, not {type(value).__name__}")
    if len(value) > MAX_CUSTOM_DATA:
        raise DefinitionError(f"custom_data: at most {MAX_CUSTOM_DATA} characters")
    return value
