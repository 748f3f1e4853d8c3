"""Which participants a coordinator may call: an allow-list of ``host:port`` patterns.

A coordinator calls whatever URL a transaction names, from inside the network it
runs in; given an API that takes URLs from callers, that makes it a way in to
every internal address it can reach (a ``query_prepared`` at an admin port, an
action at ``127.0.0.1:1`` whose error tells whether the port is open). With an
allow-list, a URL whose host and port match no pattern is refused when the
transaction is submitted or the branch registered, before anything is written:

>>> rules = AllowList(["*.svc.cluster.local:8000", "10.0.0.*:*", "localhost:*"])
>>> rules.allows("http://payments.svc.cluster.local:8000/charge")
True
>>> rules.allows("http://169.254.169.254/latest/meta-data")
False

A pattern is ``host:port``, each part a shell-style wildcard (``*`` ``?`` ``[...]``),
matched case-insensitively; a URL without a port has its scheme's (80, 443); an
IPv6 host is written in brackets (``[fd00::*]:8080``). An empty list allows any.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from urllib.parse import urlsplit

from ._errors import DefinitionError

_DEFAULT_PORTS = {"http": 80, "https": 443}


class AllowList:
    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns: tuple[tuple[str, str], ...] = tuple(_pattern(p) for p in patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def allows(self, url: str) -> bool:
        if not self.patterns:
            return True
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        try:
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
        except ValueError:
            return False
        return any(
            fnmatch.fnmatchcase(host, h) and fnmatch.fnmatchcase(str(port), p)
            for h, p in self.patterns
        )

    def check(self, url: str, field: str) -> None:
        """Refuse ``url`` (``DefinitionError`` naming ``field``) unless allowed."""
        if not self.allows(url):
            shown = urlsplit(url)._replace(query="", fragment="").geturl()
            raise DefinitionError(
                f"{field}: {_without_credentials(shown)} is not an allowed participant "
                "(the coordinator's participant allow-list, --participant)"
            )


def _pattern(text: str) -> tuple[str, str]:
    raw = text.strip().lower()
    host, sep, port = raw.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if not sep or not host or not port or (":" in host and not bracketed):
        raise DefinitionError(
            f"a participant pattern is host:port (*.svc:8000, 10.0.0.*:*, [::1]:*), not {text!r}"
        )
    # an IPv6 host is bracketed in a URL, and a URL's hostname has no brackets; in a
    # pattern the brackets are the URL's, not a wildcard's character class
    return (host[1:-1] if bracketed else host), port


def _without_credentials(url: str) -> str:
    from ._redact import mask

    return mask(url) or url
