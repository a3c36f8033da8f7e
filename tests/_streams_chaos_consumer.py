"""
One consumer process of the streams chaos test (tests/test_streams_chaos.py).

``python _streams_chaos_consumer.py URL NAME CLAIM_IDLE MAX_DELIVERIES FAIL_RATE POISON_EVERY WORK``

Runs a `StreamConsumer` on the stream ``chaos`` (group ``workers``) whose one
handler, ``work(n)``:

- for a poison message (``n % POISON_EVERY == 0``) counts the try in the
  hash ``chaos:tries`` and raises ``RuntimeError("poison <n>")``, every time;
- fails one delivery in ``1 / FAIL_RATE`` at random (``RuntimeError("flaky")``);
- otherwise works for up to WORK seconds (a sleep: I/O, so that messages
  are in flight when the process is killed), then counts the completion in
  the hash ``chaos:done`` and returns.

Prints ``ready`` once the consumer started; SIGTERM stops it (``stop(5)``)
and exits 0, SIGKILL is what the test uses to make it die.
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402
from gevent.event import Event  # noqa: E402

from greenworks.backoff import ExponentialBackoff  # noqa: E402
from greenworks.streams import StreamConsumer  # noqa: E402

STREAM, GROUP = "chaos", "workers"


def main(url, name, claim_idle, max_deliveries, fail_rate, poison_every, work_seconds):
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    client = redis.Redis.from_url(url, protocol=2)

    def work(n):
        if n % poison_every == 0:
            client.hincrby("chaos:tries", n, 1)
            raise RuntimeError("poison %d" % n)
        if random.random() < fail_rate:
            raise RuntimeError("flaky %d" % n)
        gevent.sleep(random.uniform(0, work_seconds))
        client.hincrby("chaos:done", n, 1)

    consumer = StreamConsumer(
        url,
        STREAM,
        GROUP,
        {"work": work},
        consumer=name,
        batch=50,
        claim_idle=claim_idle,
        max_deliveries=max_deliveries,
        backoff=ExponentialBackoff(0.05, 0.5, 0.5),
        reconnect_backoff=ExponentialBackoff(0.05, 1.0, 0.5),
    )
    stop = Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    consumer.start()
    print("ready", flush=True)
    while not stop.wait(60):  # a timeout keeps the loop alive next to a signal watcher
        pass
    clean = consumer.stop(5)
    print("stopped clean=%s" % clean, flush=True)
    return 0


if __name__ == "__main__":
    url, name, claim_idle, max_deliveries, fail_rate, poison_every, work = sys.argv[1:8]
    sys.exit(
        main(
            url,
            name,
            float(claim_idle),
            int(max_deliveries),
            float(fail_rate),
            int(poison_every),
            float(work),
        )
    )
