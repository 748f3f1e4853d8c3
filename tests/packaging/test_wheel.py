"""The package as a user gets it: ``python -m build`` makes a wheel that installs in a fresh
virtualenv outside the source tree (its dependencies at the lock's versions), where
``legato demo``, ``legato tx list``, ``legato serve``, the dashboard and ``/docs`` work from
the installed files alone; and the wheel's metadata offers the extras and the version."""

from __future__ import annotations

import email
import email.message
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from legato._version import __version__
from tests.support.processes import answers, stop_legato
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
# building, a fresh virtualenv and its install take about a minute, more on a busy machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    home: Path  # an empty directory to run the commands in, far from the source tree

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def env(self) -> dict[str, str]:
        """This process's environment without what would reach the source tree or
        choose another log."""
        drop = ("PYTHONPATH", "VIRTUAL_ENV", "LEGATO_LOG", "PYTHONHOME")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '')}"
        return env

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            argv,
            cwd=self.home,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
        return done


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``python -m build`` makes (an sdist first, the wheel built from it)."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    (wheel,) = dist.glob("legato-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-c",
            str(ROOT / "requirements.lock"),
            str(built),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return Installed(built, venv, tmp_path_factory.mktemp("home"))


def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(z.read(name))


def requirements_of(meta: email.message.Message, extra: str) -> set[str]:
    """The names an extra adds, lower-case."""
    names = set()
    for line in meta.get_all("Requires-Dist") or []:
        if re.search(rf"extra == ['\"]{extra}['\"]", line):
            names.add(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0].lower())
    return names


def test_the_wheel_holds_the_files_the_code_reads_beside_it(built: Path) -> None:
    with zipfile.ZipFile(built) as z:
        names = set(z.namelist())
    source = ROOT / "src"
    beside = {
        str(p.relative_to(source))
        for p in (source / "legato").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }
    assert beside, "templates, static files and SQL live beside the code"
    assert beside <= names, beside - names
    assert "legato/py.typed" in names
    # the licence the metadata names, its text carried with the code
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names


def test_the_wheel_offers_the_extras_and_all_of_them_in_all(built: Path) -> None:
    meta = metadata(built)
    assert meta["Version"] == __version__
    assert {"all", "participant", "brokers", "django"} <= set(meta.get_all("Provides-Extra") or [])
    assert requirements_of(meta, "django") == {"django"}
    assert {"pymysql", "sqlalchemy"} <= requirements_of(meta, "participant")
    assert {"aio-pika", "nats-py", "redis"} <= requirements_of(meta, "brokers")
    everything = {
        name
        for extra in ("participant", "brokers", "django")
        for name in requirements_of(meta, extra)
    }
    assert requirements_of(meta, "all") == everything


def test_pip_installs_every_extra_with_all(installed: Installed) -> None:
    report = installed.run(
        installed.bin("python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--dry-run",
        "--disable-pip-version-check",
        "--report",
        "-",
        "-c",
        str(ROOT / "requirements.lock"),
        f"legato[all] @ {installed.wheel.as_uri()}",
    )
    chosen = {item["metadata"]["name"].lower() for item in json.loads(report.stdout)["install"]}
    assert {"django", "sqlalchemy", "pymysql", "aiomysql", "redis", "nats-py", "aio-pika"} <= chosen


def test_the_installed_legato_is_the_wheels_and_says_its_version(installed: Installed) -> None:
    where = installed.run(installed.bin("python"), "-c", "import legato; print(legato.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(installed.venv)
    assert installed.run(installed.bin("legato"), "--version").stdout.strip() == (
        f"legato {__version__}"
    )


@pytest.fixture
def demo_output(installed: Installed) -> str:
    """``legato demo``, a short run, in the empty directory: what it printed."""
    done = installed.run(installed.bin("legato"), "demo", "--n", "20", timeout=120)
    assert "all checks passed" in done.stdout
    return done.stdout


@pytest.fixture
def served(installed: Installed, demo_output: str) -> Iterator[str]:
    """``legato serve`` from the fresh virtualenv, on the log the demo left: its URL."""
    port = free_port()
    output = installed.home / "serve.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [installed.bin("legato"), "serve", "--port", str(port)],
            cwd=installed.home,
            env=installed.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        if not answers(url + "/health", process, every=0.2):
            pytest.fail(f"legato serve did not start: {output.read_text()}")
        yield url
    finally:
        stop_legato(process, None)  # the output stays in the virtualenv's home


def test_a_user_runs_the_demo_lists_it_and_serves_it_with_the_dashboard_and_docs(
    installed: Installed, demo_output: str, served: str
) -> None:
    (gid,) = re.findall(r"tx show (\S+)\s+# booked", demo_output)
    assert gid in installed.run(installed.bin("legato"), "tx", "list").stdout
    assert httpx.get(served + "/health").json()["status"] == "ok"
    page = httpx.get(served + f"/tx/{gid}")
    assert page.status_code == 200 and gid in page.text
    front = httpx.get(served + "/")
    assert front.status_code == 200 and "<html" in front.text.lower()
    for asset in re.findall(r'(?:src|href)="(/[^"]+\.(?:css|js))"', front.text):
        assert httpx.get(served + asset).status_code == 200, asset
    docs = httpx.get(served + "/docs")
    assert docs.status_code == 200 and not re.search(r"https?://", docs.text)
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', docs.text):
        assert httpx.get(served + asset).status_code == 200, asset
