"""
A child process racing others for job-store claims (tests/test_jobstores.py).

Usage: ``python _jobstore_racer.py sqlite <path> | redis <url> <prefix>``.
It prints ``ready``, then for each line ``<job> <due iso>`` read from stdin
claims that due time and prints the Claim's value; it ends when stdin closes.
The test synchronises on lines, never on time.
"""

import datetime
import sys

from gevent import monkey

monkey.patch_all()

from greenworks.jobstores import RedisJobStore, SQLiteJobStore  # noqa: E402


def main(argv):
    store = SQLiteJobStore(argv[1]) if argv[0] == "sqlite" else RedisJobStore(argv[1], argv[2])
    print("ready", flush=True)
    for line in sys.stdin:
        job, due = line.split()
        print(store.claim(job, datetime.datetime.fromisoformat(due)).value, flush=True)
    store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
