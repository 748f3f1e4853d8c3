"""A travel demo's directory (``--dir``): what a run leaves there (the services'
SQLite files, the manifest the check reads, the log if it is a SQLite file of its
own), and wiping it for a fresh run."""

from __future__ import annotations

from pathlib import Path

from legato.log.sqlite import path_from_url

from .check import MANIFEST
from .services import DATABASES


def absolute_log_url(log_url: str) -> str:
    """A SQLite URL with an absolute path: the check may run from another directory."""
    if not log_url.startswith("sqlite:"):
        return log_url
    return f"sqlite:///{Path(path_from_url(log_url)).resolve()}"


def wipe(directory: Path, log_url: str) -> bool:
    """Delete the services' databases, and the log if it is a SQLite file of this
    directory. Whether the log was wiped (a log elsewhere is never deleted)."""
    files = [directory / name for name in (*DATABASES.values(), MANIFEST)]
    log_path = Path(path_from_url(log_url)).resolve() if log_url.startswith("sqlite:") else None
    ours = log_path is not None and log_path.parent == directory
    if ours and log_path is not None:
        files.append(log_path)
    for f in files:
        for extra in ("", "-wal", "-shm", "-journal"):
            Path(f"{f}{extra}").unlink(missing_ok=True)
    return ours
