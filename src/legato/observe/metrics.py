"""Prometheus metrics: a hook counting what this coordinator does, and gauges read
from the log when scraped.

Labels are bounded: mode, op, outcome; never a gid or a branch. One gauge has a
name: ``legato_transactions_unclaimed{mode,name}``, the transactions that have been
due past ``log.UNCLAIMED_GRACE`` with no coordinator holding them, by the name no
running coordinator claims; a name in the log is the code's (a registered saga, a
workflow's ``name@version``) or ``wire:<mode>`` for what came over HTTP, and at most
``log.UNCLAIMED_NAMES`` are reported. Counters count this process's work (sum them
over processes); the log-wide gauges (unfinished, stuck, unclaimed, oldest
unfinished age) read the shared log, so every process reports the same value (take
the max).

Processes behind one port (``legato serve --workers N``) share their metrics
through prometheus-client's multiprocess mode: with ``PROMETHEUS_MULTIPROC_DIR``
set (``legato serve`` sets it for N > 1; ``Metrics`` takes it from
``legato._process_settings``), every worker's scrape renders the sum of all workers'
counters and histograms, their in-flight gauges summed over live workers, and
the log-wide gauges as last read.

>>> metrics = Metrics()                                     # doctest: +SKIP
>>> coordinator = Coordinator(log, hooks=[metrics])         # doctest: +SKIP
>>> await metrics.refresh(coordinator); metrics.render()   # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .._hooks import Hooks
from .._model import OpName, TxRecord, TxStatus
from .._process_settings import process_settings
from ..log import UNCLAIMED_GRACE

if TYPE_CHECKING:
    from ..log import Log
    from ..modes._core import TxState

CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Watched(Protocol):
    """What the gauges are read from: a coordinator."""

    @property
    def in_flight(self) -> int: ...

    @property
    def fenced(self) -> int: ...

    @property
    def log(self) -> Log: ...


class Metrics(Hooks):
    """Counters and histograms fed by the coordinator's hooks, in a registry of their
    own (several coordinators in one process each keep theirs).

    ``shared_dir``: where this process and its sibling workers keep their metrics,
    which prometheus-client writes there when ``PROMETHEUS_MULTIPROC_DIR`` names it
    before it is imported, as in a worker of ``legato serve --workers N``. Default:
    that variable, as this process read it; when it is unset, nothing is shared.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, shared_dir: str | None = None
    ) -> None:
        if shared_dir is None:
            shared_dir = process_settings().metrics_dir
        self.shared_dir = shared_dir
        r = self.registry = registry or CollectorRegistry(auto_describe=True)
        self.started = Counter(
            "legato_transactions_started", "Transactions written to the log", ["mode"], registry=r
        )
        self.ended = Counter(
            "legato_transactions_ended",
            "Transactions that ended, by outcome (succeeded or failed)",
            ["mode", "outcome"],
            registry=r,
        )
        self.became_stuck = Counter(
            "legato_transactions_became_stuck",
            "Transactions parked as stuck (an op past its retry limit, a changed definition)",
            ["mode"],
            registry=r,
        )
        self.op_seconds = Histogram(
            "legato_op_duration_seconds",
            "One op attempt's duration, from its start to its outcome",
            ["mode", "op"],
            buckets=_LATENCY,
            registry=r,
        )
        self.op_attempts = Counter(
            "legato_op_attempts",
            "Op attempts by outcome (ok, failed, unknown, ongoing)",
            ["mode", "op", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "legato_op_retries", "Op attempts after the first", ["mode", "op"], registry=r
        )
        self.resumed = Counter(
            "legato_transactions_resumed",
            "Transactions this coordinator took up from the log (recovery, requests)",
            registry=r,
        )
        self.takeovers = Counter(
            "legato_lease_takeovers",
            "Transactions claimed after another coordinator's lease expired",
            registry=r,
        )
        self.fenced = Counter(
            "legato_lease_fenced",
            "Transactions this coordinator stopped driving before their lease could expire, "
            "its renewals not landing (the log unreachable): no op of them starts here",
            registry=r,
        )
        self.batch_size = Histogram(
            "legato_log_batch_size",
            "Writes committed together by the log's group commit",
            buckets=_BATCH,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "legato_log_batch_seconds",
            "Time to commit one batch of log writes",
            buckets=_LATENCY,
            registry=r,
        )
        # multiprocess_mode matters only with PROMETHEUS_MULTIPROC_DIR set (see above)
        self.in_flight = Gauge(
            "legato_transactions_in_flight",
            "Transactions this coordinator is driving now",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.fenced_now = Gauge(
            "legato_transactions_fenced",
            "Transactions this coordinator stopped driving at their fence and has not yet "
            "driven again or found taken over (non-zero: its log is out of reach)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.unfinished = Gauge(
            "legato_transactions_unfinished",
            "Unended transactions in the log, by status",
            ["status"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.stuck = Gauge(
            "legato_transactions_stuck",
            "Unended transactions marked stuck",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.unclaimed = Gauge(
            "legato_transactions_unclaimed",
            "Unended transactions due for over a minute that no coordinator holds: no "
            "running coordinator has their name (a workflow's name@version, a saga's name)",
            ["mode", "name"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self._unclaimed_shown: set[tuple[str, str]] = set()
        self.oldest_age = Gauge(
            "legato_oldest_unfinished_age_seconds",
            "Age of the oldest unended transaction (0 when there is none)",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.scrape_errors = Counter(
            "legato_metrics_log_errors",
            "Scrapes whose log-wide gauges could not be read",
            registry=r,
        )

    # -- hooks ---------------------------------------------------------------------

    def on_created(self, tx: TxRecord) -> None:
        self.started.labels(str(tx.mode)).inc()

    def on_resumed(self, tx: TxRecord, previous: str | None) -> None:
        self.resumed.inc()
        if previous is not None:
            self.takeovers.inc()

    def before_op(self, tx: TxRecord, branch: str, op: OpName, attempt: int) -> None:
        if attempt > 1:
            self.retries.labels(str(tx.mode), str(op)).inc()

    def after_op(
        self,
        tx: TxRecord,
        branch: str,
        op: OpName,
        attempt: int,
        outcome: str,
        seconds: float,
        detail: object,
    ) -> None:
        mode, name = str(tx.mode), str(op)
        self.op_seconds.labels(mode, name).observe(seconds)
        self.op_attempts.labels(mode, name, outcome).inc()

    def after_write(self, tx: TxRecord, state: TxState, before: TxState) -> None:
        if state.status.ended and not before.status.ended:
            self.ended.labels(str(tx.mode), str(state.status)).inc()
        if state.stuck and not before.stuck:
            self.became_stuck.labels(str(tx.mode)).inc()

    def on_log_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def on_fenced(self, tx: TxRecord) -> None:
        self.fenced.inc()

    # -- scrape --------------------------------------------------------------------

    async def refresh(self, coordinator: Watched) -> None:
        """Set the gauges: this coordinator's in-flight count, and the log's."""
        from .._errors import LogError

        self.in_flight.set(coordinator.in_flight)
        self.fenced_now.set(coordinator.fenced)
        now = time.time()
        try:
            summary = await coordinator.log.summary(now, unclaimed_before=now - UNCLAIMED_GRACE)
        except LogError:
            self.scrape_errors.inc()
            return
        for status in TxStatus:
            if not status.ended:
                self.unfinished.labels(str(status)).set(summary.counts.get(str(status), 0))
        self.stuck.set(summary.stuck)
        shown = {(u.mode, u.name): u.count for u in summary.unclaimed}
        for mode, name in self._unclaimed_shown - set(shown):
            # claimed since: 0 rather than dropped, for a worker's shared file keeps
            # whatever was last set in it
            self.unclaimed.labels(mode, name).set(0)
        for (mode, name), count in shown.items():
            self.unclaimed.labels(mode, name).set(count)
        self._unclaimed_shown |= set(shown)
        oldest = summary.oldest_unfinished_at
        self.oldest_age.set(0.0 if oldest is None else max(0.0, time.time() - oldest))

    def render(self) -> bytes:
        if self.shared_dir:
            # every worker's values, from the files they all write
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                registry, self.shared_dir
            )
            return generate_latest(registry)
        return generate_latest(self.registry)

    def process_ended(self) -> None:
        """This worker is stopping: its live gauges (in flight) stop counting."""
        if self.shared_dir:
            multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
                os.getpid(), self.shared_dir
            )
