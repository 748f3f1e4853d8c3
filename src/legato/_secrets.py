"""Comparing a token a client gave with the API token.

``hmac.compare_digest`` on two ``str`` refuses any non-ASCII character with a
``TypeError``: a header, a cookie or a form holding one made every guarded call
answer 500 (and was never counted as a wrong guess). Both sides are compared as
UTF-8 bytes instead, in constant time, whatever the client sent.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping


def same_token(given: str, token: str) -> bool:
    """Whether ``given`` is ``token``."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8", "replace"))


def bearer(headers: Mapping[str, str]) -> str | None:
    """The token of ``Authorization: Bearer <token>`` in ``headers``, or None."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None
