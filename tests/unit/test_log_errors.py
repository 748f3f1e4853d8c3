"""A log failure in Legato's words, and the answer the API gives for it.

A driver error meaning that the log's server went away, is shutting down or
cannot be reached is ``LogUnavailable``: the APIs answer it 503 with
``Retry-After``, never 500. A statement the database refuses is a plain
``LogError``, still 503 but with nothing to wait for.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from legato import LogError, LogUnavailable
from legato.log.postgres import PostgresLog
from legato.server import dtm

GONE = [
    errors.AdminShutdown("terminating connection due to administrator command"),
    errors.CrashShutdown("terminating connection because of crash of another server process"),
    errors.CannotConnectNow("the database system is starting up"),
    errors.ConnectionFailure("could not receive data from client"),
    psycopg.OperationalError("server closed the connection unexpectedly"),
    psycopg.InterfaceError("the connection is closed"),
]
REFUSED = [
    errors.UniqueViolation('duplicate key value violates unique constraint "legato_tx_pkey"'),
    psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"),
]


@pytest.mark.parametrize("error", GONE, ids=lambda e: type(e).__name__)
def test_a_driver_error_saying_the_server_is_away_is_log_unavailable(error: Exception) -> None:
    translated = PostgresLog("postgresql://legato@db/legato")._translate(error)

    assert isinstance(translated, LogUnavailable)
    assert str(error) in str(translated)


@pytest.mark.parametrize("error", REFUSED, ids=lambda e: type(e).__name__)
def test_a_statement_the_database_refuses_is_a_log_error_the_server_is_not_away(
    error: Exception,
) -> None:
    translated = PostgresLog("postgresql://legato@db/legato")._translate(error)

    assert isinstance(translated, LogError)
    assert not isinstance(translated, LogUnavailable)


def test_the_dtm_api_answers_the_log_away_503_with_retry_after() -> None:
    answer = dtm.error_response(LogUnavailable("PostgreSQL log: the database is starting up"))

    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "2"


def test_the_dtm_api_answers_another_log_failure_503_with_nothing_to_wait_for() -> None:
    answer = dtm.error_response(LogError("PostgreSQL log: DataError: NUL"))

    assert answer.status_code == 503
    assert "retry-after" not in answer.headers
