"""JSON is the only payload format: never pickle, never truncated."""

from __future__ import annotations

import json
import math
from typing import Any

from ._errors import PayloadError

JSON_SCHEMA_VERSION = 1
"""Version of the payload envelope stored with each transaction."""

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_decoder = json.JSONDecoder()


MAX_DEPTH = 100
"""Deeper nesting than this is refused: no honest payload needs it, and it would
exhaust the stack of whoever decodes it."""


def _find_bad(value: Any, path: str, depth: int = 0) -> str | None:
    """Return the path and reason of the first value JSON cannot carry faithfully."""
    if depth > MAX_DEPTH:
        return f"{path}: nested deeper than {MAX_DEPTH} levels"
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{path}: the string is not valid Unicode (it holds a lone surrogate)"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path}: {value!r} is not a finite number"
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            bad = _find_bad(item, f"{path}[{i}]", depth + 1)
            if bad:
                return bad
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: key {key!r} is not a string"
            bad = _find_bad(item, f"{path}.{key}", depth + 1)
            if bad:
                return bad
        return None
    return f"{path}: {type(value).__name__} is not JSON-serialisable"


def dumps(value: Any, *, what: str = "payload", checked: bool = False) -> str:
    """Encode ``value`` as compact JSON, or raise ``PayloadError`` naming the bad field.

    ``checked=True`` first walks the value (see :func:`check`), so that what the
    encoder would quietly change (a key ``1`` becoming ``"1"``) is refused too.
    """
    if checked:
        check(value, what=what)
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        bad = _find_bad(value, what)
        raise PayloadError(bad or f"{what}: {exc}") from None


def compact(value: Any) -> str:
    """``value`` as ``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``
    writes it (``NaN`` included), through one encoder made once: a request's body, the
    size of a payload, not what the log stores (:func:`dumps`)."""
    return _compact.encode(value)


def loads(text: str | None) -> Any:
    """Decode JSON text written by :func:`dumps` (``None`` stays ``None``)."""
    if text is None:
        return None
    return _decoder.decode(text)


def check(value: Any, *, what: str = "payload") -> Any:
    """Return ``value`` after proving it round-trips through JSON unchanged in kind."""
    bad = _find_bad(value, what)
    if bad:
        raise PayloadError(bad)
    return value
