"""``legato serve --workers N``'s parent process: uvicorn's supervisor, which on a
signal sends each worker SIGTERM and waits for them; a signal that comes while it
waits is sent on to them too, so that a second SIGTERM stops every worker at once."""

from __future__ import annotations

import os
import signal

from uvicorn.supervisors import Multiprocess


class Supervisor(Multiprocess):
    def join_all(self) -> None:
        while any(p.process.is_alive() for p in self.processes):
            for p in self.processes:
                p.process.join(0.1)
            if self.signal_queue:
                self.signal_queue.clear()
                for p in self.processes:
                    if p.process.is_alive() and p.process.pid is not None:
                        os.kill(p.process.pid, signal.SIGTERM)
