"""A fuzzer against a real ``legato serve`` (issue 12): Schemathesis drives every
operation of the native API's OpenAPI description, Hypothesis builds DTM's bodies
(whose shape the description leaves open), hostile values mixed with good ones.

For every request: no 5xx, no connection reset, and a refused one (4xx) writes
nothing: the log holds as many transactions after it as before. Bounded in
examples, so that the suite's time stays flat.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.processes import Served, start_serve, stop_serve
from tests.support.scripted_participant import serve
from tests.support.services import new_pg_database

TOKEN = "fuzz-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = 25


@pytest.fixture(scope="module")
def participant_url() -> Iterator[str]:
    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({"dtm_result": "SUCCESS"})

    app = Starlette(routes=[Route("/{path:path}", ok, methods=["GET", "POST", "PUT"])])
    with serve(app) as url:
        yield url


@pytest.fixture(scope="module")
def fuzzed(
    participant_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Served]:
    """One service for the module, with a token and an allow-list naming only the test's
    participant, so that no generated URL is ever called."""
    import os

    if os.environ.get("LEGATO_TEST_LOG", "sqlite") == "postgres":
        log = request.getfixturevalue("pg_database_module")
    else:
        log = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'log.db'}"
    port = participant_url.rsplit(":", 1)[1]
    env = {"LEGATO_API_TOKEN": TOKEN, "LEGATO_PARTICIPANTS": f"127.0.0.1:{port}"}
    served = start_serve(log, env=env)
    yield served
    stop_serve(served)


@pytest.fixture(scope="module")
def pg_database_module(pg_template: str) -> Iterator[str]:
    with new_pg_database("legato_f", template=pg_template) as url:
        yield url


def written(log: str) -> int:
    """How many transactions the log holds, read from its database directly."""
    if log.startswith("sqlite:"):
        with sqlite3.connect(log.removeprefix("sqlite:///")) as conn:
            return int(conn.execute("SELECT count(*) FROM legato_tx").fetchone()[0])
    with psycopg.connect(log) as conn:
        row = conn.execute("SELECT count(*) FROM legato_tx").fetchone()
        assert row is not None
        return int(row[0])


def check(served: Served, before: int, status: int, what: str) -> None:
    assert status < 500, f"{what}: answered {status}"
    if 400 <= status < 500:
        assert written(served.log) == before, f"{what}: refused ({status}) but wrote"


# -- the native API, from its OpenAPI description -------------------------------------------


def _description() -> dict[str, Any]:
    """The native API's OpenAPI description, as ``legato serve`` publishes it (read from
    the app itself: Schemathesis' lazy loader does not work with this pytest)."""
    from legato.server import create_app

    description: dict[str, Any] = create_app("memory://").openapi()
    return description


schema = schemathesis.openapi.from_dict(_description())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_native_call_is_a_5xx_and_a_refused_one_writes_nothing(
    case: Any, fuzzed: Served
) -> None:
    before = written(fuzzed.log)
    response = case.call(base_url=fuzzed.url, headers=AUTH, timeout=30)
    check(fuzzed, before, response.status_code, f"{case.method} {case.formatted_path}")


# -- DTM's API, from Hypothesis --------------------------------------------------------------

hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "a\r\nX-Evil: 1", "nul\x00", "\ud800", "x" * 300, "é", "../.."]),
)
gid = st.one_of(st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True), hostile_text)
number = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 30, 1e300, -1]),
    hostile_text,
    st.none(),
)
json_leaf = st.one_of(st.none(), st.booleans(), number, hostile_text)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def url(participant: str) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.just("http://127.0.0.1:1/"),
        st.just("broker://nowhere/topic"),
        st.just(participant.replace("http://", "http://user:pw@") + "/ok"),
        hostile_text,
        json_value,
    )


def good_fields(participant: str) -> dict[str, st.SearchStrategy[Any]]:
    """Each field of DTM's bodies, as a well-behaved client fills it."""
    ok = st.just(participant + "/ok")
    seconds = st.one_of(st.sampled_from([1, 30, 3600, 86400]), st.floats(0.5, 86400))
    header_name = st.from_regex(r"X-[A-Za-z0-9-]{1,10}", fullmatch=True)
    return {
        "gid": st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True),
        "trans_type": st.sampled_from(["saga", "tcc", "xa", "msg"]),
        "steps": st.lists(st.fixed_dictionaries({"action": ok, "compensate": ok}), max_size=3),
        "payloads": st.lists(st.just('{"amount": 30}'), max_size=3),
        "custom_data": st.just('{"concurrent": true, "orders": {"1": [0]}}'),
        "query_prepared": ok,
        "rollback_reason": st.text(st.characters(codec="ascii"), max_size=20),
        "wait_result": st.just(False),
        "timeout_to_fail": seconds,
        "request_timeout": st.floats(0.5, 3600),
        "retry_interval": st.floats(0.05, 3600),
        "retry_limit": st.integers(1, 10_000),
        "branch_headers": st.dictionaries(
            header_name, st.from_regex(r"[ -~]{0,20}", fullmatch=True), max_size=2
        ),
        "passthrough_headers": st.lists(header_name, max_size=2),
        "branch_id": st.from_regex(r"[0-9]{2}", fullmatch=True),
        "confirm": ok,
        "cancel": ok,
        "url": ok,
        "data": st.just('{"amount": 30}'),
    }


def hostile_fields(participant: str) -> dict[str, st.SearchStrategy[Any]]:
    """Each field as an attacker, a fuzzer or a buggy client fills it."""
    return {
        "gid": hostile_text,
        "trans_type": st.one_of(st.sampled_from(["", "workflow", "SAGA"]), hostile_text),
        "steps": st.one_of(
            st.lists(
                st.one_of(
                    st.fixed_dictionaries(
                        {"action": url(participant), "compensate": url(participant)}
                    ),
                    json_value,
                ),
                max_size=3,
            ),
            json_value,
        ),
        "payloads": st.one_of(
            st.lists(st.one_of(hostile_text, json_value), max_size=3), json_value
        ),
        "custom_data": st.one_of(
            hostile_text, json_value, st.just('{"concurrent": true, "orders": {"9": [7]}}')
        ),
        "query_prepared": url(participant),
        "rollback_reason": st.one_of(hostile_text, json_value),
        "wait_result": json_value,
        "timeout_to_fail": number,
        "request_timeout": number,
        "retry_interval": number,
        "retry_limit": number,
        "branch_headers": st.one_of(
            st.dictionaries(hostile_text, hostile_text, max_size=3), json_value
        ),
        "passthrough_headers": st.one_of(st.lists(hostile_text, max_size=3), json_value),
        "branch_id": hostile_text,
        "confirm": url(participant),
        "cancel": url(participant),
        "url": url(participant),
        "data": st.one_of(hostile_text, json_value),
    }


@st.composite
def dtm_body(draw: st.DrawFn, participant: str) -> dict[str, Any]:
    """A body a good client would send, with none, one or a few fields spoilt: most
    requests get past the first check, so that every later one is reached too."""
    good, bad = good_fields(participant), hostile_fields(participant)
    keys = draw(st.sets(st.sampled_from(sorted(good)), max_size=8)) | {"gid", "trans_type"}
    spoilt = draw(st.sets(st.sampled_from(sorted(good)), max_size=2))
    body = {k: draw(bad[k] if k in spoilt else good[k]) for k in sorted(keys)}
    for k in spoilt - keys:
        body[k] = draw(bad[k])
    if "steps" in body and isinstance(body["steps"], list) and "payloads" not in spoilt:
        body["payloads"] = ['{"amount": 30}'] * len(body["steps"])
    return body


ENDPOINTS = ["prepare", "submit", "abort", "registerBranch", "forceStop"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_no_dtm_call_is_a_5xx_and_a_refused_one_writes_nothing(
    fuzzed: Served, participant_url: str, endpoint: str
) -> None:
    with httpx.Client(base_url=fuzzed.dtm, headers=AUTH, timeout=30) as client:

        @given(
            body=st.one_of(dtm_body(participant_url), json_value),
            raw=st.sampled_from([False] * 9 + [True]),
        )
        @settings(
            max_examples=4 * EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        def run(body: Any, raw: bool) -> None:
            # NaN and Infinity go out as bare words, as a careless encoder writes them;
            # a lone surrogate as its escape
            content = json.dumps(body, allow_nan=True).encode()
            if raw:
                content = content[: len(content) // 2]  # cut off: not JSON at all
            before = written(fuzzed.log)
            response = client.post(
                "/" + endpoint, content=content, headers={"Content-Type": "application/json"}
            )
            check(fuzzed, before, response.status_code, f"{endpoint} {content[:200]!r}")

        run()
