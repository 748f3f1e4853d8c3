"""A TCP proxy a test puts between a client and its server, to cut the line.

    with CuttingProxy(pg.port) as proxy:
        url = pg.url("log").replace(f":{pg.port}/", f":{proxy.port}/")
        proxy.cut_next_answer()   # the next answer is swallowed and the line cut

``cut_next_answer`` makes the one case a server restart only gives by chance: the
server has run the statement (and committed it) and answered, but the client never
hears the answer; its connection ends instead.

``cut()`` takes the server out of the client's reach while it stays up for everyone
else: every connection through the proxy is closed, and each new one closed as soon as
it is made, until ``mend()``.
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
        self._down = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.cuts = 0
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def cut_next_answer(self) -> None:
        """The next bytes any server connection sends are dropped, and both ends of that
        connection closed."""
        self._cut.set()

    def cut(self) -> None:
        """Close every connection through the proxy, and each new one, until ``mend``."""
        self._down.set()
        self._close_all()

    def mend(self) -> None:
        """Forward new connections again."""
        self._down.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if self._down.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._down.is_set():  # cut while it connected
                    client.close()
                    server.close()
                    continue
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
        self._close_all()

    def _close_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def __enter__(self) -> CuttingProxy:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
