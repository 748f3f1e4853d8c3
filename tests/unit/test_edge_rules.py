"""The rules the edges apply, each alone: identifiers, headers, redaction, the
participant allow-list, JSON a backend can hold, and the settings."""

from __future__ import annotations

import pytest

from legato import DefinitionError
from legato._allow import AllowList
from legato._bounds import check_branch_id, check_gid, check_headers
from legato._edge import Refused, check_json
from legato._redact import header_names, mask, options_view
from legato._secrets import same_token
from legato.settings import Settings, SettingsError, parse_size


@pytest.mark.parametrize("gid", ["order-42", "a" * 128, "tenant:7.order@2", "x~y+z=w_v"])
def test_a_gid_of_the_safe_characters_passes(gid: str) -> None:
    assert check_gid(gid) == gid


@pytest.mark.parametrize(
    ("gid", "why"),
    [
        ("", "1-128 characters"),
        ("a" * 129, "1-128 characters"),
        ("a b", "' ' is not allowed"),
        ("a\r\nb", "'\\r' is not allowed"),
        ("a\x00b", "'\\x00' is not allowed"),
        ("a/b", "'/' is not allowed"),
        ("Zürich", "'ü' is not allowed"),
        (42, "a string"),
    ],
)
def test_a_gid_that_is_unsafe_somewhere_is_refused_naming_why(gid: object, why: str) -> None:
    with pytest.raises(DefinitionError, match=r"^gid: ") as caught:
        check_gid(gid)
    assert why in str(caught.value)


def test_a_branch_id_is_at_most_64() -> None:
    assert check_branch_id("b" * 64)
    with pytest.raises(DefinitionError, match="1-64"):
        check_branch_id("b" * 65)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-A": "a\r\nX-Evil: 1"},
        {"X-A": "nul\x00"},
        {"X A": "v"},
        {"": "v"},
        {"Content-Length": "1"},
        {"idempotency-key": "mine"},
        {"X-A": "é"},
        {f"X-{i}": "v" for i in range(65)},
    ],
)
def test_headers_that_could_split_or_forge_a_request_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(DefinitionError, match=r"^headers"):
        check_headers(headers)


def test_ordinary_headers_pass() -> None:
    given = {"X-Api-Key": "k-123", "Authorization": "Basic dTpw", "X-Trace": "a b\tc"}
    assert check_headers(given) == given


def test_credentials_in_urls_are_masked_wherever_they_stand() -> None:
    text = "ClientError calling http://svc:pw@pay:8000/charge: refused (https://tok@h/x)"
    assert mask(text) == (
        "ClientError calling http://svc:***@pay:8000/charge: refused (https://***@h/x)"
    )
    assert mask("no url here") == "no url here"
    assert mask(None) is None


def test_options_show_header_names_never_values() -> None:
    options = {"headers": {"X-Api-Key": "k"}, "spec": {"steps": []}, "timeout_to_fail": 5}
    assert options_view(options) == {"headers": ["X-Api-Key"], "timeout_to_fail": 5}
    assert header_names(None) == []


def test_the_allow_list_matches_host_and_port_with_wildcards() -> None:
    rules = AllowList(["*.svc:8000", "10.0.0.*:*", "[::1]:9000", "plain.example:443"])
    assert rules.allows("http://pay.svc:8000/x")
    assert not rules.allows("http://pay.svc:8001/x")
    assert rules.allows("http://10.0.0.7:1234/")
    assert rules.allows("http://[::1]:9000/")
    assert not rules.allows("http://[::2]:9000/")
    assert AllowList(["[fd00::*]:*"]).allows("http://[fd00::7]:80/")
    assert rules.allows("https://plain.example/")  # the scheme's port
    assert not rules.allows("http://plain.example/")
    assert not rules.allows("http://169.254.169.254/latest")
    with pytest.raises(DefinitionError, match=r"steps.0.action: http://u:\*\*\*@x:1/ "):
        rules.check("http://u:pw@x:1/?q=1", "steps.0.action")
    assert AllowList().allows("http://anything:1/")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"a": 1e400}', "too large"),
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b'{"\\udfff": 1}', "lone surrogate"),
        (b"[" * 33 + b"]" * 33, "deeper than 32"),
        (b"[" * 100_000 + b"]" * 100_000, "deeper than 32"),
        (b"\xff", "not UTF-8"),
        (b"{nope", "not JSON"),
    ],
)
def test_json_no_backend_can_hold_is_refused(body: bytes, why: str) -> None:
    with pytest.raises(Refused) as caught:
        check_json(body, 32)
    assert caught.value.status == 400
    assert why in caught.value.message


def test_json_within_the_bounds_passes() -> None:
    check_json(b'{"a": [1, 2.5, "\\u00e9", {"b": null}]}', 32)
    check_json(b"[" * 32 + b"]" * 32, 32)


def test_tokens_compare_as_bytes_whatever_they_hold() -> None:
    assert same_token("s3cret", "s3cret")
    assert not same_token("tökén", "s3cret")
    assert not same_token("\ud800", "s3cret")


def test_settings_read_sizes_lists_and_refuse_bad_values_by_name() -> None:
    s = Settings.from_env(
        {
            "LEGATO_MAX_BODY_BYTES": "2MiB",
            "LEGATO_PARTICIPANTS": "a.svc:80, b.svc:*",
            "LEGATO_OPEN_READS": "true",
        }
    )
    assert s.max_body_bytes == 2 * 1024 * 1024
    assert s.participants == ("a.svc:80", "b.svc:*")
    assert s.open_reads is True
    assert Settings.from_env(s.to_env()) == s
    assert parse_size("512k") == 512 * 1024
    for env, name in [
        ({"LEGATO_HEADER_TIMEOUT": "nan"}, "header_timeout (--header-timeout"),
        ({"LEGATO_API_TOKEN": "tökén"}, "api_token (LEGATO_API_TOKEN)"),
        ({"LEGATO_ALLOWED_ORIGINS": "evil"}, "allowed_origins (--allowed-origin"),
        ({"LEGATO_MAX_BODY_BYTES": "0"}, "max_body_bytes"),
    ]:
        with pytest.raises(SettingsError, match=rf"^setting {name.split()[0]}") as caught:
            Settings.from_env(env)
        assert name in str(caught.value)
