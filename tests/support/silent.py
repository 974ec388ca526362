"""An endpoint that hangs: a TCP server on 127.0.0.1 that accepts every connection and never answers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType


class SilentServer:
    """Accepts connections, reads whatever comes, never writes a byte, and counts the connections still open.

    A connection counts as open until the client closes it, so a client that gave up (a read timeout)
    is seen going away, and one still waiting is seen holding on.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._open = 0
        self.accepted = 0
        self._closing = False
        self._connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._closing:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._open += 1
                self.accepted += 1
                self._connections.append(connection)
            threading.Thread(target=self._drain, args=(connection,), daemon=True).start()

    def _drain(self, connection: socket.socket) -> None:
        try:
            while connection.recv(65536):
                pass  # the request arrives and is never answered
        except OSError:
            pass
        with self._lock:
            self._open -= 1

    def open_connections(self) -> int:
        with self._lock:
            return self._open

    def wait_until_all_closed(self, seconds: float) -> bool:
        """Whether every client has let go within ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.open_connections() == 0:
                return True
            time.sleep(0.02)
        return self.open_connections() == 0

    def close(self) -> None:
        self._closing = True
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
