"""
The demo's plumbing: its console (event lines, a live table or one line per
second) and the loopback servers its components work against.

Private to :mod:`greenworks.demo`; imported only after it monkey-patched.
"""

import logging
import os
import random
from collections.abc import Callable, Iterable
from typing import IO, Any

from gevent.pywsgi import WSGIServer
from gevent.server import StreamServer

from greenworks.clock import ClockLike

__all__ = ["Console", "ConsoleLogHandler", "HealthServer", "WorkServer", "bar"]


# -- output -------------------------------------------------------------------


class Console:
    """Event lines plus a status display: a redrawn table on a terminal, a line per second otherwise."""

    def __init__(self, out: IO[str], clock: ClockLike) -> None:
        self.out = out
        self.clock = clock
        self.started = clock.monotonic()
        isatty = getattr(out, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.width = 100
        if self.tty:
            try:
                self.width = os.get_terminal_size(out.fileno()).columns or self.width
            except (AttributeError, OSError, ValueError):
                pass
        self._table: list[str] = []
        #: Called once if the output goes away (a closed pipe).
        self.on_broken: Callable[[], object] | None = None
        self.broken = False

    def elapsed(self) -> float:
        return self.clock.monotonic() - self.started

    def _write(self, text: str) -> None:
        if self.broken:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except BrokenPipeError:
            self.broken = True
            # Point the descriptor at /dev/null so the interpreter's last
            # flush at exit does not fail again.
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.out.fileno())
            except (AttributeError, OSError, ValueError):
                pass
            if self.on_broken is not None:
                self.on_broken()

    def _erase(self) -> None:
        if self._table:
            # Cursor up to the first table line, then clear to the end of the screen.
            self._write("\x1b[%dF\x1b[J" % len(self._table))

    def event(self, component: str, text: str) -> None:
        line = "%6.2fs  %-12s %s\n" % (self.elapsed(), component + ":", text)
        if self.tty:
            self._erase()
            self._write(line + "".join(row + "\n" for row in self._table))
        else:
            self._write(line)

    def say(self, text: str) -> None:
        self.event("demo", text)

    def show(self, rows: Iterable[str], summary: str) -> None:
        if self.tty:
            if not self._table:
                self._write("\x1b[?25l")  # hide the cursor while the table is redrawn
            self._erase()
            # A row that wrapped would take two lines and break the redraw.
            self._table = [row[: max(20, self.width - 1)] for row in rows]
            self._write("".join(row + "\n" for row in self._table))
        else:
            self._write("%6.2fs  status:      %s\n" % (self.elapsed(), summary))

    def close(self) -> None:
        """Give the terminal its cursor back (the table stays on screen)."""
        if self.tty and self._table:
            self._write("\x1b[?25h")


class ConsoleLogHandler(logging.Handler):
    """Shows greenworks' own warnings and errors as one-line demo events (no tracebacks)."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.WARNING)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.event("log", "%s %s" % (record.levelname, record.getMessage().splitlines()[0]))
        except Exception:
            self.handleError(record)


def bar(fraction: float, width: int = 12) -> str:
    filled = max(0, min(width, round(fraction * width)))
    return "[" + "#" * filled + "." * (width - filled) + "]"


# -- loopback servers ---------------------------------------------------------


class HealthServer:
    """A loopback HTTP server answering ``/health``: 200, or 503 while ``healthy`` is False."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.healthy = True
        self.server = WSGIServer(("127.0.0.1", 0), self.app, log=None, error_log=None)
        self.server.start()
        self.url = "http://127.0.0.1:%d/health" % self.server.server_port

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        code = "200 OK" if self.healthy else "503 Service Unavailable"
        start_response(code, [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok" if self.healthy else b"no"]

    def stop(self) -> None:
        self.server.stop(timeout=1)


class WorkServer:
    """A loopback TCP server that answers each line after 50-150 ms, like a slow backend."""

    def __init__(self, clock: ClockLike) -> None:
        self.clock = clock
        self.server = StreamServer(("127.0.0.1", 0), self.handle)
        self.server.start()
        self.address = ("127.0.0.1", self.server.server_port)

    def handle(self, sock: Any, _address: object) -> None:
        with sock:
            if sock.recv(64):
                self.clock.sleep(random.uniform(0.05, 0.15))
                sock.sendall(b"done\n")

    def stop(self) -> None:
        self.server.stop(timeout=1)
