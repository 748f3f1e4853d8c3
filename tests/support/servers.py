"""Throwaway database servers a test owns: started on a free port, removed after.

The shared servers on the standard ports are never reconfigured or restarted by a
test. A test that needs a setting they lack (``max_prepared_transactions``), or a
server it may stop, kill or restart, starts its own here:

    with PgServer(settings={"max_prepared_transactions": "64"}) as pg:
        url = pg.create_database("ledger")       # postgresql://postgres@127.0.0.1:PORT/ledger
        pg.restart()                             # fast shutdown, then start again

    with MariaServer() as maria:
        url = maria.create_database("ledger")    # mysql://root@127.0.0.1:PORT/ledger
        maria.kill()                             # kill -9 the server
        maria.start()

    with RabbitServer() as rabbit:
        url = rabbit.url                         # amqp://guest:guest@127.0.0.1:PORT/
        rabbit.restart()                         # a clean stop (SIGTERM), then start again

PostgreSQL refuses to run as root: as root, ``initdb`` and the server run as the
``postgres`` user, in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _children(pid: int) -> list[int]:
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(stat.split("/")[2]))
    return out


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def pg_bin() -> Path | None:
    """The directory of PostgreSQL's server programs (initdb, pg_ctl), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def pg_problem() -> str | None:
    """Why a throwaway PostgreSQL server cannot be started here, or None."""
    if pg_bin() is None:
        return "PostgreSQL's server programs (initdb, pg_ctl) are not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run PostgreSQL as"
    return None


def maria_problem() -> str | None:
    """Why a throwaway MariaDB server cannot be started here, or None."""
    if shutil.which("mariadb-install-db") is None or _mariadbd() is None:
        return "MariaDB's server programs (mariadb-install-db, mariadbd) are not installed"
    return None


def _mariadbd() -> str | None:
    for candidate in ("/usr/sbin/mariadbd", "/usr/sbin/mysqld"):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("mariadbd")


def rabbit_problem() -> str | None:
    """Why a throwaway RabbitMQ node cannot be started here, or None."""
    if not os.access(_RABBIT, os.X_OK):
        return f"RabbitMQ's server program ({_RABBIT}) is not installed"
    if shutil.which("epmd") is None:
        return "Erlang's epmd is not installed"
    return None


_RABBIT = "/usr/lib/rabbitmq/bin/rabbitmq-server"


class _Server:
    """What a throwaway server does besides starting and stopping: go away whole."""

    root: Path

    def start(self) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()


class PgServer(_Server):
    """A PostgreSQL cluster of its own (``initdb`` + ``pg_ctl``) on a free port."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        problem = pg_problem()
        if problem is not None:
            raise RuntimeError(problem)
        bindir = pg_bin()
        assert bindir is not None
        self.bin = bindir
        self.port = free_port()
        self.settings = {
            # a test server: nothing it holds must survive the machine, only the process
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            **(settings or {}),
        }
        self.root = Path(tempfile.mkdtemp(prefix="legato-pg-"))
        self.data = self.root / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        options = "\n".join(f"{k} = '{v}'" for k, v in self.settings.items())
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\n{options}\n"
            )
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.data / "postgresql.conf", pw.pw_uid, pw.pw_gid)

    def _run(self, cmd: list[str], timeout: float = 120) -> None:
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=self.root)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.decode()[-2000:]}\n{tail}"
            )

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        log = self.root / "server.log"
        self._run(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        self._wait_ready()

    def stop(self, mode: str = "fast") -> None:
        """``mode``: smart, fast (roll back the sessions, close them) or immediate."""
        if (self.data / "postmaster.pid").exists():
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def kill(self) -> None:
        """kill -9 the postmaster and its backends: a crash, not a shutdown."""
        pid_file = self.data / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return
        family = [pid, *_children(pid)]
        for p in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Dead, but maybe not reaped (a zombie answers kill(pid, 0)): the next postmaster
        # would take the stale lock files for a live server.
        pid_file.unlink(missing_ok=True)
        for name in (f".s.PGSQL.{self.port}.lock", f".s.PGSQL.{self.port}"):
            (self.root / name).unlink(missing_ok=True)

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    # -- databases ------------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def execute(self, sql: str, dbname: str = "postgres") -> list[Any]:
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            cur = conn.execute(sql)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str) -> str:
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


class MariaServer(_Server):
    """A MariaDB server of its own (``mariadb-install-db`` + ``mariadbd``) on a free port."""

    def __init__(self) -> None:
        problem = maria_problem()
        if problem is not None:
            raise RuntimeError(problem)
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="legato-maria-"))
        self.data = self.root / "data"
        self.socket = self.root / "mysqld.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *user,
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )

    def start(self) -> None:
        mariadbd = _mariadbd()
        assert mariadbd is not None
        user = ["--user=root"] if os.geteuid() == 0 else []
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - the server's, closed by it
        self.proc = subprocess.Popen(
            [
                mariadbd,
                "--no-defaults",
                f"--datadir={self.data}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.socket}",
                f"--pid-file={self.root / 'mysqld.pid'}",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=16M",
                "--innodb-flush-log-at-trx-commit=2",
                "--skip-log-bin",
                *user,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 60
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.root / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the throwaway MariaDB did not start:\n{tail}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        import pymysql

        try:
            pymysql.connect(
                host="127.0.0.1", port=self.port, user="root", connect_timeout=2
            ).close()
        except pymysql.MySQLError:
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """kill -9 the server: a crash, not a shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, dbname: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{dbname}"

    def execute(self, sql: str, dbname: str | None = None) -> list[Any]:
        import pymysql

        conn = pymysql.connect(
            host="127.0.0.1", port=self.port, user="root", database=dbname, autocommit=True
        )
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        self.execute(f"CREATE DATABASE `{name}`")
        return self.url(name)


class RabbitServer(_Server):
    """A RabbitMQ node of its own on free ports, with its own epmd, files and config.

    Everything the shared node reads is replaced: its node name, its data and log
    directories, its config (a listener on the free port, no plugins: no management
    listener to collide with), its env file, and ``HOME`` (its own Erlang cookie). Its
    epmd listens on a port of its own, so the node registers nowhere shared.
    """

    def __init__(self) -> None:
        problem = rabbit_problem()
        if problem is not None:
            raise RuntimeError(problem)
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        self.root = Path(tempfile.mkdtemp(prefix="legato-rabbit-"))
        self.node = f"legato-test-{self.port}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        r = self.root
        return {
            **os.environ,
            "HOME": str(r),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(r / "mnesia"),
            "RABBITMQ_LOG_BASE": str(r / "log"),
            "RABBITMQ_CONFIG_FILE": str(r / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(r / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(r / "rabbitmq-env.conf"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def start(self) -> None:
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - the server's, closed by it
        self.proc = subprocess.Popen(
            [_RABBIT], env=self._env(), cwd=self.root, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 120
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.root / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the throwaway RabbitMQ did not start:\n{tail}")
            time.sleep(0.2)

    def _ready(self) -> bool:
        """Whether the node completes an AMQP handshake (the port opens before it can)."""
        if not _port_open(self.port):
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"AMQP\x00\x00\x09\x01")
                return s.recv(1) == b"\x01"  # a method frame: connection.start
        except OSError:
            return False

    def _beam(self) -> int | None:
        """The Erlang VM's pid: the script runs it as its child."""
        if self.proc is None:
            return None
        kids = _children(self.proc.pid)
        return kids[0] if kids else None

    def _end(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        beam = self._beam()
        with contextlib.suppress(ProcessLookupError):
            os.kill(beam if beam is not None else self.proc.pid, sig)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            for pid in (beam, self.proc.pid):
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        """A clean stop: RabbitMQ shuts down on SIGTERM, durable queues kept on disk."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """kill -9 the node: a crash, not a shutdown."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        self.kill()
        # the node's own epmd outlives it (Erlang starts it as a daemon): end it by its port
        subprocess.run(
            ["epmd", "-port", str(self.epmd_port), "-kill"], capture_output=True, timeout=10
        )
        shutil.rmtree(self.root, ignore_errors=True)
