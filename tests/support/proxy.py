"""A TCP proxy a test puts between a client and its server, to cut the line.

    with CuttingProxy(pg.port) as proxy:
        url = pg.url("log").replace(f":{pg.port}/", f":{proxy.port}/")
        proxy.cut_next_answer()   # the next answer is swallowed and the line cut

``cut_next_answer`` makes the one case a server restart only gives by chance: the
server has run the statement (and committed it) and answered, but the client never
hears the answer; its connection ends instead.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class CuttingProxy:
    """Forwards ``127.0.0.1:<port>`` to ``127.0.0.1:<target>``, a thread per direction."""

    def __init__(self, target: int) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.cuts = 0
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def cut_next_answer(self) -> None:
        """The next bytes any server connection sends are dropped, and both ends of that
        connection closed."""
        self._cut.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            for source, sink, answers in ((client, server, False), (server, client, True)):
                threading.Thread(
                    target=self._pump, args=(source, sink, answers), name="proxy", daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while data := source.recv(65536):
                if answers and self._cut.is_set():
                    self._cut.clear()
                    self.cuts += 1
                    break
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def __enter__(self) -> CuttingProxy:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
