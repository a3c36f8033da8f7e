"""Shows a Dispatcher growing under a burst of blocking socket calls, then shrinking back when idle.

A small echo server on 127.0.0.1 answers each line after 50 ms. Each task
opens a plain (monkey-patched) ``socket``, sends one line and reads the
answer: ordinary blocking code, which yields to the hub while it waits. A
burst of 200 such tasks makes the pool double up to its maximum; once the
burst is over and nothing is dispatched for ``wait_between_scale_downs``
(0.3 s here, 300 s by default), the pool halves, again and again, down to
its minimum.

Expected output::

    echo server on 127.0.0.1:...
    pool running with 2 workers (min 2, max 32)
    burst of 200 requests dispatched
    pool grew to 32 workers
    all 200 requests answered exactly once in ... s
    pool shrank to 16 workers
    pool shrank to 8 workers
    pool shrank to 4 workers
    pool shrank to 2 workers
    back at the minimum; stats: ... scale_ups=... scale_downs=4
"""

from gevent import monkey

monkey.patch_all()

import socket
import sys
import time

import gevent
from gevent.server import StreamServer

from greenworks.dispatcher import Dispatcher

REQUESTS = 200
DELAY = 0.05


def echo(sock, address):
    """Answer each line after DELAY seconds, like a slow backend."""
    reader = sock.makefile("rb")
    for line in reader:
        gevent.sleep(DELAY)
        sock.sendall(b"echo " + line)
    reader.close()
    sock.close()


def main():
    server = StreamServer(("127.0.0.1", 0), echo)
    server.start()
    print("echo server on 127.0.0.1:%d" % server.server_port)
    answers = {}

    def request(number):
        # Plain blocking socket code: monkey-patching makes it cooperative.
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as conn:
            conn.sendall(b"%d\n" % number)
            reply = conn.makefile("rb").readline()
        answers.setdefault(number, []).append(reply)

    pool = Dispatcher(50, 2, 32, wait_between_scale_downs=0.3, name="fetchers")
    pool.run()
    gevent.sleep(0)
    print("pool running with %d workers (min 2, max 32)" % pool.worker_count)
    started = time.monotonic()
    for number in range(REQUESTS):
        pool.dispatch(lambda number=number: request(number))
    print("burst of %d requests dispatched" % REQUESTS)

    peak = 0
    while len(answers) < REQUESTS and time.monotonic() - started < 3:
        peak = max(peak, pool.worker_count)
        gevent.sleep(0.01)
    print("pool grew to %d workers" % peak)
    ok = all(answers.get(n) == [b"echo %d\n" % n] for n in range(REQUESTS))
    if not ok:
        print("FAILED: missing or duplicated answers", file=sys.stderr)
        return 1
    print("all %d requests answered exactly once in %.2f s" % (REQUESTS, time.monotonic() - started))

    size, deadline = pool.worker_count, time.monotonic() + 3
    while pool.worker_count > pool.min_workers and time.monotonic() < deadline:
        gevent.sleep(0.01)
        if pool.worker_count != size:
            size = pool.worker_count
            print("pool shrank to %d workers" % size)
    stats = pool.stats()
    pool.quit(drain=True)
    server.stop()
    if peak != 32 or size != 2:
        print(
            "FAILED: expected growth to 32 and shrinkage to 2, got %d and %d" % (peak, size), file=sys.stderr
        )
        return 1
    print(
        "back at the minimum; stats: executed=%(executed)d failed=%(failed)d "
        "scale_ups=%(scale_ups)d scale_downs=%(scale_downs)d" % stats
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
