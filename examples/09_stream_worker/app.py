"""
A WSGI app whose work survives the process: sent to a Redis stream, run by every gunicorn worker.

``/send?orders=N`` sends N orders (``StreamProducer.send``) and answers at
once; each gunicorn worker runs a `StreamConsumer` (through
``greenworks.gunicorn.runtime``) that handles them on its own Dispatcher, so
the orders spread over the workers, and over hosts if you run more than one.
Kill a worker with ``kill -9``: the orders it held are claimed by the others
``claim_idle`` seconds later. Stop everything and start again: the orders
sent meanwhile wait in Redis.

The same consumer runs without gunicorn under ``greenworks run app:registry``.

Run it from this directory (a Redis on 127.0.0.1:6379)::

    gunicorn -c gunicorn.conf.py app:application
    python producer.py 20                     # or: curl '127.0.0.1:8000/send?orders=20'
    curl -s 127.0.0.1:8000/status

Settings come from the environment so the test suite can point it elsewhere:
``GREENWORKS_EXAMPLE_REDIS`` (default ``redis://127.0.0.1:6379/0``),
``GREENWORKS_EXAMPLE_STREAM`` (default ``example:orders``),
``GREENWORKS_EXAMPLE_CLAIM_IDLE`` (seconds, default 30).
"""

import json
import logging
import os
import urllib.parse

from zope.interface.registry import Components

from greenworks.gunicorn import runtime
from greenworks.runutil import provide_worker
from greenworks.streams import RedisDedupe, StreamConsumer, StreamProducer, current_message

REDIS = os.environ.get("GREENWORKS_EXAMPLE_REDIS", "redis://127.0.0.1:6379/0")
STREAM = os.environ.get("GREENWORKS_EXAMPLE_STREAM", "example:orders")
CLAIM_IDLE = float(os.environ.get("GREENWORKS_EXAMPLE_CLAIM_IDLE", "30"))

logger = logging.getLogger("example")


def ship_order(order_id, items=1):
    """The handler: at least once, so it says which delivery this is (a real one would be idempotent)."""
    message = current_message()
    logger.info(
        "handled order %s (%d items) in pid %d, delivery %d of message %s",
        order_id,
        items,
        os.getpid(),
        message.delivery_count,
        message.id,
    )


def make_consumer():
    """One consumer per process, named host:pid; completions are remembered for a day."""
    return StreamConsumer(
        REDIS,
        STREAM,
        "shippers",
        {"ship_order": ship_order},
        claim_idle=CLAIM_IDLE,
        dedupe=RedisDedupe(REDIS, 86400),
        name="orders",
    )


# Under gunicorn: started in each worker by post_worker_init, drained on its way out.
runtime.add(lambda: make_consumer().start(), stop=lambda consumer: consumer.stop(timeout=3), name="orders")


# Under ``greenworks run app:registry``: the consumer is an IWorker (run(ctx)).
class Shippers:
    def workers(self):
        return [make_consumer()]


registry = Components("example")
provide_worker(registry, Shippers())

_producer = None


def producer():
    global _producer
    if _producer is None:
        _producer = StreamProducer(REDIS, STREAM)
    return _producer


def application(environ, start_response):
    """``/send?orders=N``: send N orders; ``/status``: this worker's consumer as JSON."""
    path = environ.get("PATH_INFO")
    if path == "/send":
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        count = int(query.get("orders", ["1"])[0])
        ids = [
            producer().send("ship_order", "web-%d-%d" % (os.getpid(), n), items=n + 1) for n in range(count)
        ]
        body = json.dumps({"sent": ids}).encode()
    elif path == "/status":
        body = json.dumps(runtime.status(), default=str, indent=2).encode()
    else:
        body = b"try /send?orders=3 or /status\n"
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
