"""Shows task_group: a server started with start(), clients spawned beside it, a failure, a timeout.

1. ``g.start(serve, g.ctx)`` returns once the echo server reports its port
   with ``task_status.started(port)``; three clients talk to it; then
   ``g.cancel()`` stops the server (it watches ``g.ctx``) and the group exits
   quietly.
2. One child fails: the group's context is cancelled, the sibling watching
   it ends, the sibling ignoring it is killed after the grace, and the exit
   raises an ``ExceptionGroup`` holding the one real error.
3. A group with ``timeout=`` raises ``DeadlineExceeded`` when it runs out.

Expected output::

    server ready on a port: True
    answers: echo 0 | echo 1 | echo 2
    server stopped; the group exited quietly
    caught: ValueError('disk full')
    a saw Canceled; c was killed after the grace
    timed out: DeadlineExceeded
"""

from gevent import monkey

monkey.patch_all()

import socket
import sys

import gevent
from gevent.event import Event
from gevent.server import StreamServer

from greenworks import task_group
from greenworks.exceptions import DeadlineExceeded

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


def echo(sock, _address):
    with sock.makefile("rb") as reader:
        for line in reader:
            sock.sendall(b"echo " + line)


def serve(ctx, task_status):
    server = StreamServer(("127.0.0.1", 0), echo)
    server.start()
    task_status.started(server.server_port)
    ctx.wait()
    server.stop()


def client(port, number, answers):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"%d\n" % number)
        answers[number] = conn.makefile("rb").readline().decode().strip()


def main():
    answers = {}
    with task_group() as g:
        port = g.start(serve, g.ctx)
        print("server ready on a port: %s" % (port > 0))
        clients = [g.spawn(client, port, n, answers) for n in range(3)]
        gevent.joinall(clients)
        print("answers: %s" % " | ".join(answers[n] for n in range(3)))
        g.cancel()
    print("server stopped; the group exited quietly")

    seen = {}

    def watcher(ctx):
        ctx.wait()
        seen["a"] = type(ctx.err).__name__

    def deaf():
        try:
            Event().wait()
        except gevent.GreenletExit:
            seen["c"] = "killed"
            raise

    def disk():
        raise ValueError("disk full")

    try:
        with task_group(grace=0.05) as g:
            g.spawn(watcher, g.ctx)
            g.spawn(disk)
            g.spawn(deaf)
    except ExceptionGroup as group:
        print("caught: %s" % ", ".join(repr(e) for e in group.exceptions))
    print("a saw %s; c was %s after the grace" % (seen["a"], seen["c"]))

    try:
        with task_group(timeout=0.05) as g:
            g.spawn(lambda ctx: ctx.wait(), g.ctx)
    except DeadlineExceeded as exc:
        print("timed out: %s" % type(exc).__name__)


if __name__ == "__main__":
    main()
