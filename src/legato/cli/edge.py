"""What ``legato serve`` and ``legato dashboard`` share at their edge: the flags of
who may call and how much a request may hold, read into ``Settings`` once, the
refusal to serve an open API on a reachable address, the log lines (Legato's and
uvicorn's through one handler), and the HTTP server's own options (proxies believed,
deadlines, connections)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
from typing import Any

from .._errors import SettingsError
from ..settings import Settings

logger = logging.getLogger("legato.serve")

# flag -> the setting it sets (the rest of a command's flags are its own)
_EDGE_FLAGS = {
    "open_reads": "open_reads",
    "trusted_proxy": "trusted_proxies",
    "allowed_origin": "allowed_origins",
    "max_body_bytes": "max_body_bytes",
    "max_json_depth": "max_json_depth",
    "max_page_bytes": "max_page_bytes",
    "header_timeout": "header_timeout",
    "body_timeout": "body_timeout",
    "max_connections": "max_connections",
}


def add_edge_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "security and limits", "each also LEGATO_<NAME> in the environment; see 'Security model'"
    )
    g.add_argument(
        "--insecure",
        action="store_true",
        help="serve on a non-loopback address without LEGATO_API_TOKEN (refused otherwise)",
    )
    g.add_argument(
        "--open-reads",
        action="store_true",
        default=None,
        help="reads (payloads, outputs, errors) need no token: for a trusted network",
    )
    g.add_argument(
        "--trusted-proxy",
        action="append",
        metavar="ADDRESS",
        help="believe X-Forwarded-For/-Proto from this address or network (repeatable; "
        "default: none)",
    )
    g.add_argument(
        "--allowed-origin",
        action="append",
        metavar="ORIGIN",
        help="another site (https://ops.example) whose pages may call the JSON API",
    )
    g.add_argument("--max-body-bytes", metavar="SIZE", help="request body cap (1MiB): 413")
    g.add_argument("--max-json-depth", type=int, metavar="N", help="JSON nesting cap (32)")
    g.add_argument("--max-page-bytes", metavar="SIZE", help="a list page's cap (4MiB)")
    g.add_argument("--header-timeout", type=float, metavar="S", help="seconds to send headers (10)")
    g.add_argument("--body-timeout", type=float, metavar="S", help="seconds to send a body (30)")
    g.add_argument(
        "--max-connections", type=int, metavar="N", help="connections at once, then 503 (1000)"
    )


def edge_settings(args: argparse.Namespace, **given: Any) -> Settings:
    """The settings from the environment, overridden by the flags given (and ``given``);
    exits with the bad setting named."""
    values = {setting: getattr(args, flag, None) for flag, setting in _EDGE_FLAGS.items()}
    values.update(given)
    for name in ("trusted_proxies", "allowed_origins", "participants"):
        listed = values.get(name)
        if isinstance(listed, list):
            values[name] = tuple(listed)
    try:
        return Settings.from_env(**values)
    except SettingsError as exc:
        raise SystemExit(f"legato {args.command}: {exc}") from None


def loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(f[4][0]).is_loopback for f in found)


def check_exposure(command: str, host: str, settings: Settings, insecure: bool) -> None:
    """Refuse to serve every call, unguarded, on an address others can reach."""
    if settings.api_token or loopback(host):
        return
    if not insecure:
        raise SystemExit(
            f"legato {command}: refusing to serve on {host} without an API token: anyone who "
            "reaches that address could submit, cancel and read every transaction. Set "
            "LEGATO_API_TOKEN, serve on 127.0.0.1, or pass --insecure if a network boundary "
            "already guards this address."
        )
    logger.warning(
        "serving on %s WITHOUT an API token (--insecure): every call is open to anyone who "
        "reaches this address",
        host,
    )


def configure_logs(settings: Settings) -> None:
    """Legato's and uvicorn's lines through Legato's handler, as the settings say: JSON
    off a terminal, Legato's text on one (uvicorn is told to leave logging alone)."""
    from ..observe import logs

    logs.configure(
        log_format=settings.log_format,
        level=settings.log_level.upper(),
        loggers=logs.SERVER_LOGGERS,
    )


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for these settings: its protocol with deadlines, the proxies
    whose forwarded headers it believes (none unless named), the connection cap, and
    no logging set-up of its own (``configure_logs`` did it)."""
    from ..server._protocol import GuardedProtocol

    return {
        "log_config": None,
        "http": GuardedProtocol,
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": ",".join(settings.trusted_proxies) or "",
        "limit_concurrency": settings.max_connections,
        "timeout_keep_alive": 5,
        "server_header": False,
    }
