"""A check that the test suite left the shared servers as it found them.

``scripts/test`` snapshots each shared server's settings and start time before the
tests and compares after them:

    python -m tests.support.server_settings snapshot /tmp/before.json
    ... the tests ...
    python -m tests.support.server_settings compare /tmp/before.json

``compare`` prints ``shared servers unchanged: postgresql, mariadb, ...`` and exits 0,
or names every setting that changed and every server that restarted, and exits 1.

What is read, per server (values that change on their own, counters and uptimes, are
left out; a start time derived from an uptime is compared within two seconds):

- PostgreSQL: ``pg_settings``, ``pg_file_settings`` (an ``ALTER SYSTEM`` not yet
  reloaded) and ``pg_postmaster_start_time()``;
- MariaDB: ``SHOW GLOBAL VARIABLES`` and the start time from ``Uptime``;
- Redis: ``CONFIG GET *`` and ``run_id`` (new at each start);
- RabbitMQ: ``rabbitmqctl status`` (its settings and the VM's OS pid), that process'
  start from ``/proc`` (exact; the VM's own uptime runs on a clock the wall clock's steps
  do not move) and the pid of the ``rabbit`` application's supervisor (new after
  ``stop_app``/``start_app``);
- NATS: the ``INFO`` line a client gets (``server_id`` is new at each start).

A server that does not answer is recorded as absent; absent both times is no change.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

Snapshot = dict[str, dict[str, str]]
"""Per server, its settings as text; a server not reachable has the one key ``absent``."""

START = "start time"
"""The key of a server's start time derived from its uptime (seconds since the epoch)."""
START_TOLERANCE = 2.0
"""Such a start time moves by up to a second (an uptime in whole seconds) and a bit."""
STARTED = "started at"
"""The key of a start time the server gives exactly (PostgreSQL's)."""

ABSENT = "absent"

# MariaDB globals that move while the server runs, with no one changing its settings
_MARIA_MOVING = frozenset(
    {
        "gtid_binlog_pos",
        "gtid_binlog_state",
        "gtid_current_pos",
        "gtid_slave_pos",
        "timestamp",
        "rand_seed1",
        "rand_seed2",
        "last_insert_id",
        "insert_id",
        "pseudo_thread_id",
        "identity",
        "error_count",
        "warning_count",
        "last_gtid",
        "in_transaction",
        "server_uid",
    }
)

# RabbitMQ status fields that are its settings (the rest are gauges: memory, processes...)
_RABBIT_SETTINGS = (
    "rabbitmq_version",
    "erlang_version",
    "config_files",
    "enabled_plugin_file",
    "active_plugins",
    "listeners",
    "net_ticktime",
    "vm_memory_high_watermark_setting",
    "disk_free_limit",
    "data_directory",
    "is_under_maintenance",
    "pid",
)

# NATS INFO fields that belong to the connection, not the server
_NATS_PER_CONNECTION = frozenset({"client_id", "client_ip", "nonce", "connect_urls"})


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def postgresql() -> dict[str, str]:
    import psycopg

    url = os.environ.get("LEGATO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
        out = {
            f"setting {name}": str(value)
            for name, value in conn.execute("SELECT name, setting FROM pg_settings")
        }
        files = conn.execute(
            "SELECT sourcefile, sourceline, name, setting, applied FROM pg_file_settings"
        )
        for sourcefile, line, name, setting, applied in files:
            out[f"file {sourcefile}:{line} {name}"] = f"{setting} (applied: {applied})"
        row = conn.execute("SELECT pg_postmaster_start_time()::text").fetchone()
        assert row is not None
        out[STARTED] = str(row[0])
    return out


def mariadb() -> dict[str, str]:
    import pymysql

    conn = pymysql.connect(
        host=os.environ.get("LEGATO_TEST_MARIADB_HOST", "127.0.0.1"),
        port=int(os.environ.get("LEGATO_TEST_MARIADB_PORT", "3306")),
        user=os.environ.get("LEGATO_TEST_MARIADB_USER", "root"),
        connect_timeout=3,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL VARIABLES")
            out = {
                f"variable {name}": str(value)
                for name, value in cur.fetchall()
                if name.lower() not in _MARIA_MOVING
            }
            cur.execute("SHOW GLOBAL STATUS LIKE 'Uptime'")
            row = cur.fetchone()
            assert row is not None
            out[START] = str(time.time() - float(row[1]))
    finally:
        conn.close()
    return out


def redis() -> dict[str, str]:
    import redis as redis_client

    client = redis_client.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=3)
    try:
        config = client.config_get("*")
        info = client.info("server")
    finally:
        client.close()
    out = {f"config {k}": _text(v) for k, v in config.items()}
    out["run_id"] = str(info["run_id"])
    out[START] = str(time.time() - float(info["uptime_in_seconds"]))
    return out


def _rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise OSError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()[:300]}")
    return done.stdout


def _process_start(pid: object) -> str | None:
    """When OS process ``pid`` started, exactly (``/proc``), or None where it cannot be read
    (a server on another machine: its pid, also recorded, still changes at a restart)."""
    try:
        stat = Path(f"/proc/{int(str(pid))}/stat").read_text()
    except (OSError, ValueError):
        return None
    # field 22, counted after the command's closing parenthesis (a name may hold spaces)
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return f"process {pid}, {ticks / os.sysconf('SC_CLK_TCK'):.2f} s after the machine booted"


def rabbitmq() -> dict[str, str]:
    if shutil.which("rabbitmqctl") is None:
        raise OSError("rabbitmqctl is not installed: the node's start time cannot be read")
    status = json.loads(_rabbitmqctl("status", "--formatter", "json"))
    out = {f"status {k}": _text(status.get(k)) for k in _RABBIT_SETTINGS}
    # Not time.time() - uptime: the VM counts its uptime on Erlang's monotonic clock, so
    # that difference moves with every step of the machine's wall clock (a CI machine's
    # NTP moved it past two seconds during one run, with the same VM up throughout). The
    # VM's OS process start, counted in ticks since boot, does not move.
    started = _process_start(status.get("pid"))
    if started is not None:
        out[STARTED] = started
    sup = _rabbitmqctl("eval", "erlang:pid_to_list(whereis(rabbit_sup)).").strip()
    out["rabbit application supervisor"] = sup
    return out


def nats() -> dict[str, str]:
    with socket.create_connection(("127.0.0.1", 4222), timeout=3) as s:
        line = s.makefile("rb").readline().decode()
    if not line.startswith("INFO "):
        raise OSError(f"NATS answered {line[:80]!r}, not an INFO line")
    info = json.loads(line[5:])
    return {f"info {k}": _text(v) for k, v in info.items() if k not in _NATS_PER_CONNECTION}


READERS: Mapping[str, Callable[[], dict[str, str]]] = {
    "postgresql": postgresql,
    "mariadb": mariadb,
    "redis": redis,
    "rabbitmq": rabbitmq,
    "nats": nats,
}


def snapshot(readers: Mapping[str, Callable[[], dict[str, str]]] | None = None) -> Snapshot:
    """Each server's settings now (read by ``READERS``); one that does not answer is absent."""
    out: Snapshot = {}
    for name, read in (READERS if readers is None else readers).items():
        try:
            out[name] = read()
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            out[name] = {ABSENT: first}
    return out


def _shorten(value: str | None) -> str:
    if value is None:
        return "(none)"
    return value if len(value) <= 80 else value[:77] + "..."


def compare(before: Snapshot, after: Snapshot) -> list[str]:
    """What changed between two snapshots, one line per change; empty when nothing did."""
    changes: list[str] = []
    for server in sorted(before.keys() | after.keys()):
        old, new = before.get(server, {ABSENT: "not read"}), after.get(server, {})
        if ABSENT in old or ABSENT in new:
            if (ABSENT in old) != (ABSENT in new):
                was = "absent" if ABSENT in old else "up"
                now = f"absent ({new[ABSENT]})" if ABSENT in new else "up"
                changes.append(f"{server}: was {was} before the tests, {now} after")
            continue
        for key in sorted(old.keys() | new.keys()):
            a, b = old.get(key), new.get(key)
            if key == START and a is not None and b is not None:
                if abs(float(a) - float(b)) > START_TOLERANCE:
                    moved = time.strftime("%H:%M:%S", time.gmtime(float(b)))
                    changes.append(f"{server}: restarted (started again at {moved} UTC)")
            elif key == STARTED and a != b:
                changes.append(f"{server}: restarted (started again at {b})")
            elif a != b:
                changes.append(f"{server}: {key} was {_shorten(a)}, now {_shorten(b)}")
    return changes


def report(before: Snapshot, after: Snapshot) -> tuple[bool, str]:
    """Whether nothing changed, and the line(s) that say so or say what did."""
    changes = compare(before, after)
    if changes:
        return False, "shared servers CHANGED by the tests:\n  " + "\n  ".join(changes)
    checked = [s for s in sorted(after) if ABSENT not in after[s]]
    absent = [s for s in sorted(after) if ABSENT in after[s]]
    line = "shared servers unchanged: " + (", ".join(checked) or "none reachable")
    if absent:
        line += f" (not reachable, not checked: {', '.join(absent)})"
    return True, line


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("snapshot", "compare"):
        print("usage: python -m tests.support.server_settings snapshot|compare FILE")
        return 2
    command, path = argv[0], Path(argv[1])
    if command == "snapshot":
        path.write_text(json.dumps(snapshot(), indent=1, sort_keys=True))
        return 0
    ok, text = report(json.loads(path.read_text()), snapshot())
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
