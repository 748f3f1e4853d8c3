"""A participant cannot hurt the coordinator with its answer (DESIGN section 10).

The participant is a real HTTP server in its own process
(``tests.support.hostile_participant``) answering 200 with a gzip bomb (1 MiB on the
wire, 1 GiB inflated), 1.5 GB of plain body, a body dripping a byte at a time, a body
that is not the gzip it says, one cut off. Each saga below has one such step, tried
twice, and ends failed: the attempts end within their timeout, each unknown with its
reason; meanwhile the coordinator's peak memory barely moves and its event loop
never stalls.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from legato import Coordinator, RetryPolicy, Saga, TxStatus
from legato.transports.http import DEFAULT_MAX_ANSWER_BYTES, HttpCall, HttpTransport
from tests.support import hostile_participant
from tests.support.scripted_participant import Participant
from tests.support.watch import Watch

TIMEOUT = 3.0  # each attempt's
SLACK = 1.5  # past it, for a busy machine
TWICE = RetryPolicy(max_attempts=2, backoff=0.05, jitter=0.0)
MiB = 2**20


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with hostile_participant.running(tmp_path_factory.mktemp("hostile")) as url:
        yield url


def one_hostile_step(url: str) -> Saga:
    saga = Saga("hostile")
    saga.step(
        "fetch",
        action=HttpCall(url, timeout=TIMEOUT),
        compensate=lambda ctx: None,
        retry=TWICE,
    )
    return saga


async def run_against(log_url: str, url: str) -> tuple[str, list[tuple[float, str]], Watch]:
    """Run the one-step saga; its reason, each attempt's (seconds, error), the watch."""
    async with Coordinator(log_url, poll_interval=0.1) as c, Watch() as watch:
        outcome = await (await c.submit(one_hostile_step(url))).result(timeout=60)
        events = await c.events(outcome.gid)
    assert outcome.status is TxStatus.FAILED
    attempts = [
        (e.detail["took_ms"] / 1000, str(e.detail["error"]))
        for e in events
        if e.kind == "op.unknown"
    ]
    return outcome.reason or "", attempts, watch


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/bomb", f"its body passed the cap of {DEFAULT_MAX_ANSWER_BYTES} bytes"),
        ("/bomb/chunked", f"its body passed the cap of {DEFAULT_MAX_ANSWER_BYTES} bytes"),
        ("/huge", f"its body is 1500000000 bytes, over the cap of {DEFAULT_MAX_ANSWER_BYTES}"),
        ("/huge/chunked", f"its body passed the cap of {DEFAULT_MAX_ANSWER_BYTES} bytes"),
    ],
)
async def test_an_answer_past_the_cap_is_unknown_and_read_no_further(
    log_url: str, hostile: str, path: str, why: str
) -> None:
    reason, attempts, watch = await run_against(log_url, hostile + path)
    assert len(attempts) == 2, "an unknown outcome is retried per the policy"
    for took, error in attempts:
        assert error == f"HTTP 200 from {hostile}{path}: {why} (max_answer_bytes)"
        assert took < TIMEOUT + SLACK
    assert "fetch.action gave up after 2 attempts" in reason
    assert watch.peak_growth < 100 * MiB, f"peak RSS grew {watch.peak_growth / MiB:.0f} MiB"
    assert watch.longest_stall < 1.0, f"the event loop stalled {watch.longest_stall:.2f}s"


async def test_a_body_dripping_past_the_timeout_ends_the_attempt_at_its_timeout(
    log_url: str, hostile: str
) -> None:
    _, attempts, watch = await run_against(log_url, hostile + "/drip")
    assert len(attempts) == 2
    for took, error in attempts:
        assert error == (
            f"HTTP 200 from {hostile}/drip: its body did not arrive in full within {TIMEOUT}s"
        )
        assert TIMEOUT - 0.1 < took < TIMEOUT + SLACK
    assert watch.longest_stall < 1.0


@pytest.mark.parametrize(
    ("path", "broken"),
    [
        ("/bad-gzip", "Can not decode content-encoding: gzip"),
        ("/cut", "Not enough data to satisfy content length header"),
    ],
)
async def test_a_body_that_cannot_be_decoded_or_is_cut_off_is_unknown(
    log_url: str, hostile: str, path: str, broken: str
) -> None:
    reason, attempts, _ = await run_against(log_url, hostile + path)
    assert len(attempts) == 2
    for _, error in attempts:
        assert error.startswith(f"HTTP 200 from {hostile}{path}: its body is broken: ")
        assert broken in error
    assert "its body is broken" in reason


@pytest.mark.parametrize("path", ["/nan", "/deep"])
async def test_a_2xx_body_the_log_cannot_store_is_done_without_an_output(
    log_url: str, hostile: str, path: str
) -> None:
    async with Coordinator(log_url, poll_interval=0.1) as c:
        outcome = await (await c.submit(one_hostile_step(hostile + path))).result(timeout=10)
    assert outcome.status is TxStatus.SUCCEEDED
    assert outcome.outputs == {"fetch": None}


async def test_the_cap_is_the_coordinators_to_set(log_url: str, participant: Participant) -> None:
    big = participant.script("/big", [(200, {"rooms": ["x" * 100] * 100})])  # ~10 kB
    saga = Saga("big")
    saga.step("rooms", action=HttpCall(big), retry=TWICE)
    async with Coordinator(log_url, poll_interval=0.1, max_answer_bytes=4096) as c:
        outcome = await (await c.submit(saga)).result(timeout=10)
    assert outcome.status is TxStatus.FAILED
    assert "over the cap of 4096 (max_answer_bytes)" in (outcome.reason or "")
    async with Coordinator(log_url, poll_interval=0.1) as c:  # 1 MiB: read, and kept
        outcome = await (await c.submit(saga)).result(timeout=10)
    assert outcome.status is TxStatus.SUCCEEDED
    assert outcome.outputs["rooms"] == {"rooms": ["x" * 100] * 100}


@pytest.mark.parametrize("cap", [0, -1, 1.5, True, "1MiB"])
def test_a_cap_that_is_not_a_positive_whole_number_is_refused(cap: object) -> None:
    with pytest.raises(ValueError, match="max_answer_bytes is a positive whole number"):
        HttpTransport(max_answer_bytes=cap)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_answer_bytes"):
        Coordinator("memory://", max_answer_bytes=cap)  # type: ignore[arg-type]
