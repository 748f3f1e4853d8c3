"""A database connection from a URL, for the commands that reach a service's database
(``legato relay``) and for XA's resources: ``sqlite:///path``, ``postgresql://...``
(psycopg) or ``mysql://user:password@host:port/db`` (PyMySQL)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ._errors import DefinitionError

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb")


def check_url(url: str, *, what: str = "a database URL") -> str:
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise DefinitionError(
            f"{what} is sqlite:///path, postgresql://... or mysql://..., not {url!r}"
        )
    if scheme in ("mysql", "mariadb") and _ssl(url) not in (None, True, False):
        raise DefinitionError(f"{what}: ssl= is true or false")
    return url


def _ssl(url: str) -> bool | str | None:
    value = parse_qs(urlsplit(url).query).get("ssl", [None])[-1]
    return {"true": True, "false": False, None: None}.get(value, value)


def connect(url: str) -> Any:
    """A new autocommit connection (the caller closes it).

    MySQL / MariaDB: ``?ssl=true`` requires TLS and ``?ssl=false`` turns it off;
    without it, TLS is off to a loopback host (it protects nothing there, and PyMySQL's
    default, TLS if the server offers it, builds a new TLS context per connection:
    30 ms) and PyMySQL's default elsewhere.
    """
    parts = urlsplit(check_url(url))
    if parts.scheme == "sqlite":
        import sqlite3

        # the outbox relay reaches it from worker threads, one call at a time
        path = url[len("sqlite:///") :]
        return sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    if parts.scheme in ("postgresql", "postgres"):
        import psycopg

        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    import pymysql  # type: ignore[import-untyped]

    host = parts.hostname or "127.0.0.1"
    ssl = _ssl(url)
    tls: dict[str, Any] = {}
    if ssl is False or (ssl is None and host in _LOOPBACK):
        tls = {"ssl_disabled": True}
    elif ssl is True:
        tls = {"ssl_verify_cert": True}
    return pymysql.connect(
        host=host,
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=parts.path.lstrip("/") or None,
        autocommit=True,
        connect_timeout=10,
        **tls,
    )
