"""A travel demo's directory (``--dir``): what a run leaves there (the services'
SQLite files, the manifest the check reads, the log if it is a SQLite file of its
own), and readying it for a run (wiped, unless the run keeps it)."""

from __future__ import annotations

from pathlib import Path

from legato.log import absolute_url, log_exists, log_file

from .check import MANIFEST
from .services import DATABASES


def absolute_log_url(log_url: str) -> str:
    """The log's URL with its file's path made absolute: the check may run from another
    directory."""
    return absolute_url(log_url)


def wipe(directory: Path, log_url: str) -> bool:
    """Delete the services' databases, and the log if it is a SQLite file of this
    directory. Whether the log was wiped (a log elsewhere is never deleted)."""
    files = [directory / name for name in (*DATABASES.values(), MANIFEST)]
    file = log_file(log_url)
    log_path = file.resolve() if file is not None else None
    ours = log_path is not None and log_path.parent == directory
    if ours and log_path is not None:
        files.append(log_path)
    for f in files:
        for extra in ("", "-wal", "-shm", "-journal"):
            Path(f"{f}{extra}").unlink(missing_ok=True)
    return ours


def ready_for_run(directory: Path, log_url: str, keep: bool) -> bool:
    """Ready ``directory`` for a run (wiped unless ``keep``). Whether the log is new to
    this run (wiped with the directory, or not made yet), so that its gids need no tag
    to be new to it."""
    wiped = not keep and wipe(directory, log_url)
    return wiped or not log_exists(log_url)
