"""An HTTP op's headers are checked where the op is made, not at its first attempt, by
the one rule for headers (legato._bounds): a name is an HTTP token, a value printable
ASCII with no CR, LF or NUL."""

from __future__ import annotations

import re

import pytest

from legato import DefinitionError
from legato.transports.http import HttpCall

URL = "http://flights:8000/reserve"


@pytest.mark.parametrize("name", ["X Tenant", "X-Tenant:", "", "Tënant", "X-Tenant\r\nX-Evil"])
def test_a_header_name_that_is_not_a_token_is_refused_by_name(name: str) -> None:
    with pytest.raises(DefinitionError, match=re.escape(f"headers: {name!r} is not a header name")):
        HttpCall(URL, headers={name: "acme"})


@pytest.mark.parametrize("value", ["acme\r\nX-Evil: 1", "acme\n", "acme\r", "ac\x00me"])
def test_a_header_value_with_cr_lf_or_nul_is_refused_naming_the_header(value: str) -> None:
    with pytest.raises(DefinitionError, match=r"headers\.X-Tenant: .* is not allowed in a header"):
        HttpCall(URL, headers={"X-Tenant": value})


def test_a_header_value_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(DefinitionError, match=r"headers\.X-Count: a header value is a string"):
        HttpCall(URL, headers={"X-Count": 3})  # type: ignore[dict-item]


def test_ordinary_headers_pass() -> None:
    headers = {"X-Tenant": "acme", "Authorization": "Bearer a.b-c", "X_Odd!#$%&'*+.^`|~": "x\ty"}
    assert HttpCall(URL, headers=headers).headers == headers


def test_a_call_read_back_from_the_log_is_checked_as_well() -> None:
    with pytest.raises(DefinitionError, match=r"headers\.X-Tenant"):
        HttpCall.from_json({"url": URL, "headers": {"X-Tenant": "a\r\nb"}})
