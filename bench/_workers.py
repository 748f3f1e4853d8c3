"""What the benches that run each part in a subprocess of its own share: how a worker
hands its result back, and running the parts once per backend on databases of their own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _services import Backend
from travel_saga import postgres_reachable

RESULT_MARK = "RESULT "


def report(result: dict[str, Any]) -> None:
    """In a worker: hand ``result`` back to the parent (the last line marked so)."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def command(script: str, kind: str, cfg: dict[str, Any]) -> list[str]:
    """The command line that runs ``script``'s worker ``kind`` with ``cfg``."""
    return [sys.executable, script, "--worker", kind, "--config", json.dumps(cfg)]


def spawn(script: str, kind: str, cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run a worker to its end and return its result, with the warnings and errors it
    logged (a stall or a lost lease explains a number that looks wrong) as ``logged``."""
    proc = subprocess.run(
        command(script, kind, cfg),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cfg["workdir"],
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result = dict(json.loads(line[len(RESULT_MARK) :]))
            result["logged"] = [
                ln for ln in proc.stderr.splitlines() if "WARNING" in ln or "ERROR" in ln
            ]
            return result
    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
    raise RuntimeError(f"the {kind} worker on {cfg['backend']} failed (exit {proc.returncode})")


def per_backend(
    names: list[str],
    workdir: str,
    prefix: str,
    run: Callable[[Backend], dict[str, Any]],
    drop: Callable[[Backend], None],
    keep: bool,
) -> tuple[dict[str, dict[str, Any]], bool]:
    """``run`` each backend (PostgreSQL skipped when unreachable), its databases named
    ``prefix_*`` and dropped afterwards by ``drop`` unless ``keep``; returns the results
    and whether every one's check passed."""
    results: dict[str, dict[str, Any]] = {}
    ok = True
    for name in names:
        if name == "postgres" and not postgres_reachable():
            print("\n== postgres ==\nskipped: no PostgreSQL on 127.0.0.1:5432 (user postgres)")
            continue
        backend = Backend(name, str(Path(workdir) / name), prefix)
        Path(backend.workdir).mkdir(parents=True, exist_ok=True)
        print(f"\n== {name} ==", flush=True)
        try:
            results[name] = run(backend)
            ok = ok and results[name]["check"]["ok"]
        finally:
            if not keep and name == "postgres":
                drop(backend)
    return results, ok


def finish(
    workdir: str, prefix: str, keep: bool, json_path: str | None, results: Any, started: float
) -> None:
    """Remove the work folder (or say what was kept), print the time, write the JSON."""
    if keep:
        print(f"\nkept: {workdir} and the {prefix}_* PostgreSQL databases")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nTotal {time.perf_counter() - started:.0f} s.")
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2))
