"""The reference workload: the 3-step travel saga on Legato and on DBOS Transact.

    .venv/bin/python bench/travel_saga.py                 # both backends, full run
    .venv/bin/python bench/travel_saga.py --quick         # smoke run
    .venv/bin/python bench/travel_saga.py --backend sqlite --n 1000 --duration 10
    .venv/bin/python bench/travel_saga.py --only legato,hand  # Legato vs the hand-written loop
    .venv/bin/python bench/travel_saga.py --only asleep --asleep 10000   # memory only
    .venv/bin/python bench/travel_saga.py --only inflight --in-flight 1000  # memory only

Four rows: Legato's declarative saga, the same steps as a Legato workflow
(``@legato.workflow``), DBOS's workflow (the same programming model), and the
same saga written by hand with no framework (a log commit after each step: the
practical limit).

Each (framework, backend) pair runs in its own subprocess on fresh databases
(DBOS is a process-wide singleton, and neither should warm the other's caches);
this script prepares the databases, starts the workers and prints one table
per backend. See bench/README.md for what is measured and the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _services  # noqa: E402
from _machine import cpu_busy, fsync_us  # noqa: E402
from _services import Backend  # noqa: E402

TARGET_RATIO = 10.0
TARGET_P50_MS = 2.0
TARGET_WF_RATIO = {"sqlite": 10.0, "postgres": 6.0}  # the workflow's throughput vs DBOS
TARGET_WF_COST = 1.3  # a workflow costs at most this many times the saga of its steps
TARGET_ASLEEP_MB = 200.0  # coordinator memory held by 10,000 workflows asleep at once
TARGET_HAND_RATIO = 1.0  # Legato's saga throughput vs the hand-written saga's
RESULT_MARK = "RESULT "

ROWS = ("legato", "legato-workflow", "dbos", "hand")  # the table's rows, run in this order
MEMORY = ("inflight", "asleep")  # the memory runs (Legato's), after the rows
PARTS = (*ROWS, *MEMORY)  # what --only may name
LABELS = {
    "legato": "Legato saga",
    "legato-workflow": "Legato workflow",
    "dbos": "DBOS",
    "hand": "hand-written",
}
KINDS = {"legato": "saga", "legato-workflow": "workflow"}
# a row whose concurrency mode is the best of several tried
BEST_OF = {"dbos": "DBOS concurrency mode", "hand": "hand-written concurrency mode"}


# -- workers (in the subprocess) -----------------------------------------------------


def worker_main(framework: str, cfg: dict[str, Any]) -> None:
    if framework == "dbos":
        import _dbos_worker as worker  # type: ignore[no-redef]
    elif framework == "hand":
        import _hand_worker as worker  # type: ignore[no-redef]
    else:
        import _legato_worker as worker  # the saga, the workflow or a memory run
    result = worker.run(cfg)
    print(RESULT_MARK + json.dumps(result), flush=True)


def spawn(framework: str, cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        framework,
        "--config",
        json.dumps(cfg),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cfg["workdir"])
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result = dict(json.loads(line[len(RESULT_MARK) :]))
            # what the framework logged at WARNING and above: a stall or a lost lease
            # explains a number that looks wrong
            result["log"] = [
                ln for ln in proc.stderr.splitlines() if "WARNING" in ln or "ERROR" in ln
            ]
            return result
    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
    where = f"the {framework} worker on {cfg['backend']}"
    raise RuntimeError(f"{where} failed (exit {proc.returncode})")


# -- machine and settings -------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def wait_idle(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (at most ``max_wait`` s) until other processes use under ``threshold`` cores.

    Returns the busy cores last seen: the benchmark shares its machine with
    whatever else runs there, and the numbers mean little when it is busy.
    """
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy()
    return busy


def postgres_reachable() -> bool:
    try:
        _services.pg_settings()
        return True
    except Exception:
        return False


# -- the table --------------------------------------------------------------------------

COLUMNS = ("seq p50 A", "seq p99 A", "seq p50 B", "seq p99 B")


def _row(res: dict[str, Any], concurrency: list[int]) -> list[float]:
    return [
        res["seq_a"]["p50_ms"],
        res["seq_a"]["p99_ms"],
        res["seq_b"]["p50_ms"],
        res["seq_b"]["p99_ms"],
        *(res[f"tput_{c}"]["per_s"] for c in concurrency),
    ]


def _ratio_line(label: str, values: list[float]) -> str:
    return f"{label:<20}" + "".join(f"{v:>11.2f}x" for v in values)


def render(backend: str, per: dict[str, dict[str, Any]], concurrency: list[int]) -> str:
    heads = [*COLUMNS, *(f"tput@{c}" for c in concurrency)]
    units = ["ms"] * 4 + ["/s"] * len(concurrency)
    lines = [
        f"{'':<20}" + "".join(f"{h:>12}" for h in heads),
        f"{'':<20}" + "".join(f"{u:>12}" for u in units),
    ]
    rows: dict[str, list[float]] = {}
    for fw in ROWS:
        res = per.get(fw)
        if res is None:
            continue
        rows[fw] = _row(res, concurrency)
        cells = [f"{v:>12.2f}" for v in rows[fw][:4]] + [f"{v:>12.0f}" for v in rows[fw][4:]]
        lines.append(f"{LABELS[fw]:<20}" + "".join(cells))

    def better(x: list[float], base: list[float]) -> list[float]:
        # how many times better x is than base: base/x for latency, x/base for rate
        out = [b / max(v, 1e-9) for v, b in zip(x[:4], base[:4], strict=True)]
        return out + [v / max(b, 1e-9) for v, b in zip(x[4:], base[4:], strict=True)]

    if "dbos" in rows:
        for fw, label in (("legato", "saga vs DBOS"), ("legato-workflow", "workflow vs DBOS")):
            if fw in rows:
                lines.append(_ratio_line(label, better(rows[fw], rows["dbos"])))
    if "hand" in rows:
        for fw, label in (
            ("legato", "saga vs hand-written"),
            ("legato-workflow", "wf vs hand-written"),
        ):
            if fw in rows:
                lines.append(_ratio_line(label, better(rows[fw], rows["hand"])))
    if "legato" in rows and "legato-workflow" in rows:
        # what the workflow costs, in sagas: workflow/saga for latency, saga/workflow for
        # rate (1.00x: as cheap as the saga; 1.30x: 30% dearer)
        cost = [1 / r for r in better(rows["legato-workflow"], rows["legato"])]
        lines.append(_ratio_line("workflow cost (saga)", cost))
    out = [f"== {backend} ==", *(lines if rows else [])]
    for fw, what in BEST_OF.items():
        res = per.get(fw)
        if res is None:
            continue
        modes = ", ".join(
            f"@{c}: {res[f'tput_{c}']['mode']} "
            f"({', '.join(f'{m} {v:.0f}/s' for m, v in res[f'tput_{c}'].get('all', {}).items())})"
            for c in concurrency
        )
        out.append(f"{what} used (best of): {modes}")
    for fw in ("legato", "legato-workflow"):
        res = per.get(fw)
        if res is None:
            continue
        batch = ", ".join(
            f"@{c}: {res[f'tput_{c}']['log_writes_per_commit']:.1f}"
            for c in concurrency
            if res[f"tput_{c}"].get("log_writes_per_commit")
        )
        out.append(f"{LABELS[fw]}: log writes per group commit: {batch}")
    for fw in ROWS:
        res = per.get(fw)
        if res is None:
            continue
        slow = ", ".join(f"@{c}: {res[f'tput_{c}']['longest_s'] * 1e3:.0f} ms" for c in concurrency)
        out.append(f"{LABELS[fw]}: longest run during throughput runs: {slow}")
        for ln in res.get("log", [])[:3]:
            out.append(f"  {LABELS[fw]} logged: {ln[:160]}")
        if len(res.get("log", [])) > 3:
            out.append(f"  ... {len(res['log']) - 3} more warnings/errors")
        chk = res["check"]
        status = "ok" if chk["ok"] else "MISMATCH"
        in_log = f", its log {chk['log']}" if "log" in chk else ""
        out.append(
            f"check {LABELS[fw]}: {status}: {chk['booked_sagas']} runs booked, "
            f"rows {chk['rows']}{in_log}"
        )
    out += _cpu_lines(per, concurrency)
    verdicts = _targets(backend, rows, concurrency)
    if verdicts:
        out.append("targets:")
        out += [f"  {v}" for v in verdicts]
    return "\n".join(out)


def _cpu_lines(per: dict[str, Any], concurrency: list[int]) -> list[str]:
    """Where the CPU goes: ms of CPU per saga in each throughput run, by process group
    (the row's own process; on PostgreSQL also the server processes of its log and of
    the three services)."""
    cols = [(fw, c) for fw in ROWS if fw in per for c in concurrency]
    cpu = {(fw, c): per[fw][f"tput_{c}"].get("cpu_ms") or {} for fw, c in cols}
    groups = list(dict.fromkeys(g for v in cpu.values() for g in v))
    if not groups:
        return []
    short = {"legato": "saga", "legato-workflow": "wf", "hand": "hand", "dbos": "dbos"}
    head = "".join(f"{short.get(fw, fw) + '@' + str(c):>12}" for fw, c in cols)
    lines = ["where the CPU goes (ms of CPU per saga, throughput runs):", f"{'':<22}{head}"]
    for g in [*groups, "total"]:
        vals = [sum(cpu[k].values()) if g == "total" else cpu[k].get(g, float("nan")) for k in cols]
        lines.append(f"{g:<22}" + "".join(f"{v:>12.2f}" for v in vals))
    return lines


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _targets(backend: str, rows: dict[str, list[float]], concurrency: list[int]) -> list[str]:
    verdicts = []
    wf_target = TARGET_WF_RATIO.get(backend, TARGET_RATIO)
    for fw, target in (("legato", TARGET_RATIO), ("legato-workflow", wf_target)):
        if fw not in rows or "dbos" not in rows:
            continue
        x, db = rows[fw], rows["dbos"]
        parts = []
        for i, c in enumerate(concurrency):
            r = x[4 + i] / max(db[4 + i], 1e-9)
            parts.append(f"tput@{c} >= {target:g}x DBOS: {_verdict(r >= target)} ({r:.1f}x)")
        verdicts.append(f"{LABELS[fw]}: " + "; ".join(parts))
    if backend == "sqlite":
        for fw in ("legato", "legato-workflow"):
            if fw in rows:
                p50 = rows[fw][0]
                verdicts.append(
                    f"{LABELS[fw]}: seq p50 A <= {TARGET_P50_MS:g} ms: "
                    f"{_verdict(p50 <= TARGET_P50_MS)} ({p50:.2f} ms)"
                )
    if "legato" in rows and "hand" in rows:
        x, hand = rows["legato"], rows["hand"]
        parts = []
        for i, c in enumerate(concurrency):
            r = x[4 + i] / max(hand[4 + i], 1e-9)
            ok = r >= TARGET_HAND_RATIO
            parts.append(
                f"tput@{c} >= {TARGET_HAND_RATIO:g}x hand-written: {_verdict(ok)} ({r:.2f}x)"
            )
        verdicts.append(f"{LABELS['legato']}: " + "; ".join(parts))
    if "legato" in rows and "legato-workflow" in rows:
        saga, wf = rows["legato"], rows["legato-workflow"]
        parts = [
            f"seq p50 A: {_verdict(wf[0] / saga[0] <= TARGET_WF_COST)} ({wf[0] / saga[0]:.2f}x)"
        ]
        for i, c in enumerate(concurrency):
            cost = saga[4 + i] / max(wf[4 + i], 1e-9)
            parts.append(f"tput@{c}: {_verdict(cost <= TARGET_WF_COST)} ({cost:.2f}x)")
        verdicts.append(
            f"Legato workflow costs <= {TARGET_WF_COST:g}x the saga: " + "; ".join(parts)
        )
    return verdicts


def render_asleep(res: dict[str, Any]) -> str:
    growth = res["growth_mb"]
    lines = [
        f"asleep: {res['n']} workflows at once (one step, then wf.sleep(3600)), started 64 "
        f"at a time with at most {res['in_flight_cap']} driven at once, in {res['start_s']:.1f} s "
        f"({res['started_per_s']:.0f}/s); all let go {res['let_go_s']:.1f} s after the first "
        f"start: {res['still_driven']} still driven, {res['body_tasks']} body tasks left, "
        f"{res['asleep_in_log']} asleep in the log (unleased, due in an hour)",
        f"  coordinator RSS ({res['rss_source']}): before {res['rss_before_mb']:.1f} MB "
        f"(after {res['warmup']} warm-up workflows), after {res['rss_after_mb']:.1f} MB: "
        f"growth {growth:.1f} MB ({res['per_workflow_kb']:.2f} KB per workflow); "
        f"process peak (VmHWM) {res['peak_rss_mb']:.1f} MB; Python allocated blocks "
        f"{res['python_blocks_growth']:+d}",
    ]
    for ln in res.get("log", [])[:3]:
        lines.append(f"  logged: {ln[:160]}")
    chk = res["check"]
    lines.append(
        f"  check: {'ok' if chk['ok'] else 'MISMATCH'}: rows {chk['rows']} "
        f"(flight: {chk['booked_sagas']} expected)"
    )
    target = TARGET_ASLEEP_MB * res["n"] / 10_000
    lines.append(
        f"  target: {res['n']} asleep hold < {target:g} MB: {_verdict(growth < target)} "
        f"({growth:.1f} MB)"
    )
    return "\n".join(lines)


def render_inflight(res: dict[str, Any]) -> str:
    lines = [
        f"in flight: {res['n']} sagas at once (each held in its first step until released), "
        f"submitted 64 at a time in {res['start_s']:.1f} s; all held: {res['held']} in the "
        f"gate, {res['driven']} driven, {res['leased_in_log']} leased in the log",
        f"  coordinator RSS ({res['rss_source']}): before {res['rss_before_mb']:.1f} MB "
        f"(after {res['warmup']} warm-up sagas), while all in flight "
        f"{res['rss_during_mb']:.1f} MB: "
        f"growth {res['growth_mb']:.1f} MB ({res['per_saga_kb']:.1f} KB per in-flight saga); "
        f"after they ended {res['rss_after_mb']:.1f} MB; process peak (VmHWM) "
        f"{res['peak_rss_mb']:.1f} MB; Python allocated blocks {res['python_blocks_growth']:+d}",
        f"  released: all ended {res['drain_s']:.2f} s later ({res['drained_per_s']:.0f}/s)",
    ]
    for ln in res.get("log", [])[:3]:
        lines.append(f"  logged: {ln[:160]}")
    chk = res["check"]
    lines.append(
        f"  check: {'ok' if chk['ok'] else 'MISMATCH'}: rows {chk['rows']} "
        f"({chk['booked_sagas']} expected), {chk['succeeded']} succeeded in the log"
    )
    return "\n".join(lines)


def render_memory(results: dict[str, dict[str, Any]]) -> str:
    """Both memory figures side by side, one column per backend."""
    backends = list(results)
    lines = ["memory (coordinator RSS growth)" + "".join(f"{b:>14}" for b in backends)]

    def row(label: str, kind: str, cell: Any) -> None:
        cells = [cell(results[b][kind]) if kind in results[b] else "-" for b in backends]
        lines.append(f"{label:<31}" + "".join(f"{c:>14}" for c in cells))

    row("RSS per in-flight saga", "inflight", lambda r: f"{r['per_saga_kb']:.1f} KB")
    # not scaled: most of the asleep run's growth is not per workflow (Python's
    # allocated blocks hardly grow), so it is printed for the N measured
    asleep = sorted({r["asleep"]["n"] for r in results.values() if "asleep" in r})
    label = (
        f"RSS per {asleep[0]:,} idle-waiting tx" if len(asleep) == 1 else "RSS, N idle-waiting tx"
    )
    row(label, "asleep", lambda r: f"{r['growth_mb']:.1f} MB")
    inflight = sorted({r["inflight"]["n"] for r in results.values() if "inflight" in r})
    lines.append(
        f"(in flight: {'/'.join(f'{n:,}' for n in inflight) or '-'} sagas held in a step at once, "
        "growth / N; idle-waiting: workflows asleep in wf.sleep, their let-go runners and "
        "tasks gone, the whole growth)"
    )
    return "\n".join(lines)


# -- orchestration ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--quick", action="store_true", help="few iterations: a smoke run")
    ap.add_argument("--n", type=int, help="sequential sagas per variant (default 300)")
    ap.add_argument("--warmup", type=int, help="sequential warm-up sagas (default 30)")
    ap.add_argument("--duration", type=float, help="seconds per throughput run (default 5)")
    ap.add_argument("--concurrency", default="16,64", help="comma-separated (default 16,64)")
    ap.add_argument(
        "--only",
        metavar="PARTS",
        help=f"comma-separated, of {', '.join(PARTS)}: run only these (default: the four "
        "rows, and inflight / asleep if --in-flight / --asleep is given)",
    )
    ap.add_argument(
        "--in-flight",
        type=int,
        metavar="N",
        help="also measure the coordinator's memory with N sagas in flight at once "
        "(default with --only inflight: 1000)",
    )
    ap.add_argument(
        "--asleep",
        type=int,
        metavar="N",
        help="also measure the coordinator's memory with N workflows asleep at once "
        "(default with --only asleep: 10000)",
    )
    ap.add_argument(
        "--dbos-modes",
        default="threads,async",
        help="DBOS concurrency modes to try, the best is reported",
    )
    ap.add_argument(
        "--hand-modes",
        default="threads,async",
        help="the hand-written saga's concurrency modes to try, the best is reported",
    )
    ap.add_argument(
        "--hand-log-conns",
        type=int,
        default=None,
        metavar="N",
        help="the hand-written saga's PostgreSQL log connections (default: 32; each "
        "participant has 16, and the log takes 4 of a saga's 7 statements)",
    )
    ap.add_argument(
        "--profile",
        metavar="FILE",
        help="cProfile Legato's sequential variant-A run (SQLite) into FILE "
        "(the saga's; the workflow's into FILE.workflow)",
    )
    ap.add_argument("--json", metavar="FILE", help="also write the raw results here")
    ap.add_argument(
        "--idle-wait",
        type=float,
        default=30.0,
        metavar="S",
        help="before each worker, wait up to S s for the machine to go idle",
    )
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        metavar="N",
        help="run the workers at this niceness (e.g. -10 as root on a shared machine)",
    )
    ap.add_argument(
        "--step-threads",
        type=int,
        default=None,
        help="Legato's step thread pool (default: the Coordinator's own default)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the SQLite files and bench_* DBs")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        worker_main(args.worker, json.loads(args.config))
        return 0

    n = args.n or (40 if args.quick else 300)
    warmup = args.warmup if args.warmup is not None else (10 if args.quick else 30)
    duration = args.duration or (1.5 if args.quick else 5.0)
    concurrency = [int(c) for c in args.concurrency.split(",") if c]
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if args.only:
        parts = [p.strip() for p in args.only.split(",") if p.strip()]
        unknown = [p for p in parts if p not in PARTS]
        if unknown:
            ap.error(f"--only: unknown {', '.join(unknown)} (known: {', '.join(PARTS)})")
    else:
        parts = [
            *ROWS,
            *(["inflight"] if args.in_flight else []),
            *(["asleep"] if args.asleep else []),
        ]
    frameworks = [fw for fw in ROWS if fw in parts]
    memory_n = {
        "inflight": (args.in_flight or 1000) if "inflight" in parts else 0,
        "asleep": (args.asleep or 10_000) if "asleep" in parts else 0,
    }

    if args.nice:
        os.nice(args.nice)  # inherited by the workers (not by the PostgreSQL server)
    workdir = tempfile.mkdtemp(prefix="legato-bench-")
    versions = {p: metadata.version(p) for p in ("legato", "dbos")}
    print(
        f"travel saga (flight, hotel, car): Legato {versions['legato']} (saga, workflow) vs "
        f"DBOS Transact {versions['dbos']} (workflow)"
    )
    print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}; Python {platform.python_version()}; "
        f"{platform.system()} {platform.release()}; fsync {fsync_us(workdir):.0f} us "
        f"(small write + fsync in {workdir}); workers' niceness {os.nice(0)}"
    )
    print(
        f"sequential: {n} sagas per variant after {warmup} warm-up; throughput: "
        f"{duration:g} s per concurrency after a short warm-up, variant A; "
        f"A = all three booked, B = car refuses, hotel and flight compensated"
    )
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    try:
        for backend_name in backends:
            if backend_name == "postgres" and not postgres_reachable():
                print("\n== postgres ==\nskipped: no PostgreSQL on 127.0.0.1:5432 (user postgres)")
                continue
            backend = Backend(backend_name, str(Path(workdir) / backend_name))
            Path(backend.workdir).mkdir(parents=True, exist_ok=True)
            per: dict[str, dict[str, Any]] = {}
            noise: list[str] = []
            for fw in frameworks:
                busy = wait_idle(args.idle_wait) if args.idle_wait > 0 else cpu_busy()
                noise.append(f"{fw} {busy:.2f}")
                _services.prepare(backend, fw)
                cfg = {
                    "kind": KINDS.get(fw),
                    "backend": backend_name,
                    "workdir": backend.workdir,
                    "n": n,
                    "warmup": warmup,
                    "duration": duration,
                    "concurrency": concurrency,
                    "dbos_modes": args.dbos_modes.split(","),
                    "hand_modes": args.hand_modes.split(","),
                    "hand_log_conns": args.hand_log_conns,
                    "step_threads": args.step_threads,
                }
                if args.profile and fw != "dbos" and backend_name == "sqlite":
                    suffix = ".workflow" if fw == "legato-workflow" else ""
                    cfg["profile"] = str(Path(args.profile).resolve()) + suffix
                per[fw] = spawn(fw, cfg, timeout=600)
            for kind in MEMORY:
                if not memory_n[kind]:
                    continue
                busy = wait_idle(args.idle_wait) if args.idle_wait > 0 else cpu_busy()
                noise.append(f"{kind} {busy:.2f}")
                _services.prepare(backend, kind)
                cfg = {
                    "kind": kind,
                    "backend": backend_name,
                    "workdir": backend.workdir,
                    kind: memory_n[kind],
                    "step_threads": args.step_threads,
                }
                per[kind] = spawn(kind, cfg, timeout=900)
            results[backend_name] = per
            print()
            if backend_name == "sqlite":
                print(
                    "durability: participants: SQLite WAL, synchronous=NORMAL (each service's "
                    "own file; identical for Legato and DBOS)"
                )
            else:
                s = _services.pg_settings()
                print(
                    f"durability: PostgreSQL {s['server_version']}: fsync={s['fsync']}, "
                    f"synchronous_commit={s['synchronous_commit']}, "
                    f"full_page_writes={s['full_page_writes']}, "
                    f"wal_sync_method={s['wal_sync_method']}; participants autocommit, "
                    f"one database each"
                )
            for fw, res in per.items():
                print(f"  {fw}: {res['durability']}")
            print(
                f"other load: cores busy just before each worker started: {', '.join(noise)} "
                f"(of {os.cpu_count()}); load average now "
                f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
            )
            print(render(backend_name, per, concurrency), flush=True)
            if "inflight" in per:
                print(render_inflight(per["inflight"]), flush=True)
            if "asleep" in per:
                print(render_asleep(per["asleep"]), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
            if "postgres" in backends and postgres_reachable():
                _services.cleanup(Backend("postgres", workdir))
        else:
            print(f"\nkept: {workdir} and the bench_* PostgreSQL databases")
    if any(k in per for per in results.values() for k in MEMORY):
        print("\n" + render_memory(results))
    legend = (
        "vs DBOS, vs hand-written: how many times better Legato is (theirs/Legato's for "
        "latency, Legato's/theirs for throughput). workflow cost: what the workflow costs in "
        "sagas of the same steps (workflow/saga for latency, saga/workflow for throughput; "
        "above 1: dearer). "
        if len(frameworks) > 1
        else ""
    )
    print(f"\n{legend}Total {time.perf_counter() - started:.0f} s.")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    bad = [
        f"{b}/{fw}" for b, per in results.items() for fw, r in per.items() if not r["check"]["ok"]
    ]
    if bad:
        print(f"row check failed for {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
