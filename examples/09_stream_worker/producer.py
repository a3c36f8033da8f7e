"""
Send orders to the stream from the command line: ``python producer.py [COUNT]``.

Each order is one message; the same order id sent twice within an hour is
added once (``dedupe_key``). Prints the ids.
"""

import sys

from app import REDIS, STREAM

from greenworks.streams import StreamProducer


def main(argv):
    count = int(argv[1]) if len(argv) > 1 else 10
    producer = StreamProducer(REDIS, STREAM)
    for n in range(count):
        order_id = "cli-%d" % n
        print(producer.send("ship_order", order_id, items=n % 3 + 1, dedupe_key=order_id))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
