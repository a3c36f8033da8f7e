"""
A real ``redis-server`` for the tests, on 127.0.0.1 and a free port.

Import the fixture into a test module (``from _redis_server import redis_server``);
it is deliberately not in conftest.py, so only the Redis tests pay for it.
The server runs without persistence (``--save "" --appendonly no``) in a
temporary directory, so :meth:`RedisServer.restart` comes back *empty*, like
a Redis that lost its data; ``RedisServer(directory, persist=True)`` keeps an
append-only file fsynced on every write instead, so a restart (even after
SIGKILL) comes back with every acknowledged write. Tests that need Redis are skipped, with the
reason, only when ``redis-server`` is not on PATH.
"""

import shutil
import socket
import subprocess

import gevent
import pytest

__all__ = ["RedisServer", "redis_server"]

REDIS_SERVER = shutil.which("redis-server")


def free_port():
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One ``redis-server`` process; start/stop/restart keep the same port."""

    def __init__(self, directory, port=None, persist=False):
        self.directory = str(directory)
        self.port = port or free_port()
        self.persist = persist
        self.proc = None
        self._drain = None

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self):
        """Start the server and return once it logged that it accepts connections."""
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "yes" if self.persist else "no",
                "--appendfsync",
                "always",
                "--dir",
                self.directory,
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        seen = []
        for line in self.proc.stdout:
            seen.append(line)
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError("redis-server did not start:\n" + "".join(seen))
        # Keep reading its log so a full pipe never blocks the server.
        self._drain = gevent.spawn(self.proc.stdout.read)

    def stop(self, kill=False):
        """Stop the server (SIGKILL with *kill*, else SIGTERM) and wait for it to exit."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
        self.proc.wait()
        self._drain.join()
        self.proc.stdout.close()
        self.proc = None

    def restart(self):
        """Kill the server and start an empty one on the same port."""
        self.stop(kill=True)
        self.start()


@pytest.fixture
def redis_server(tmp_path):
    """A running RedisServer, stopped after the test."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not on PATH (Debian package redis-server)")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)
