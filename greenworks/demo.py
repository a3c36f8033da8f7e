"""
``python -m greenworks demo``: a short live look at the runtime.

Three heartbeat workers share one context tree with a deadline of
``--seconds``; SIGINT or SIGTERM cancels the root early. Each worker prints a
line per beat, so the output shows cancellation and deadlines at work.
"""

from gevent import monkey

monkey.patch_all()

import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402

from greenworks import _greenlets  # noqa: E402
from greenworks.context import with_cancel, with_timeout  # noqa: E402

__all__ = ["main"]


def heartbeat(ctx, name, every, out):
    beats = 0
    while ctx.sleep(every):
        beats += 1
        out.write("%-8s beat %d\n" % (name, beats))
        out.flush()
    return beats


def main(args, out=sys.stdout):
    """Run the demo for ``args.seconds``; return the exit code."""
    root = with_timeout(None, args.seconds)
    handlers = [gevent.signal_handler(sig, root.cancel) for sig in (signal.SIGINT, signal.SIGTERM)]
    try:
        workers = {
            name: _greenlets.spawn(
                "greenworks.demo[%s]" % name, heartbeat, with_cancel(root), name, every, out
            )
            for name, every in (("fast", 0.5), ("medium", 1.0), ("slow", 2.0))
        }
        gevent.joinall(list(workers.values()))
        out.write("stopped by %s: %s\n" % (type(root.err).__name__, {n: g.value for n, g in workers.items()}))
    finally:
        for handler in handlers:
            handler.cancel()
    return 0
