"""
A ClusterRunner member for the cluster tests: ``python _cluster_member.py <url> <group> <tasks> <ttl> <log>``.

It applies the tasks ``0 .. tasks-1`` and prints ``ready <member id>``. Every
running task appends ``"<task> <pid> <start> <end>"`` (wall-clock seconds)
to *log* for each slice of at most 0.25 s it ran, with one ``os.write`` per
line on an ``O_APPEND`` descriptor, so the lines of several processes never
mix and a SIGKILL loses at most the slice in progress. Commands on stdin,
one line each, answered with one line: ``owned`` (``owned <n> <task,task...>``),
``stop`` (``stopped <clean>``, then the process exits). End of input: stop.
"""

import os
import sys
import time

from gevent import monkey

monkey.patch_all()

from gevent.fileobject import FileObjectPosix  # noqa: E402

from greenworks.cluster import ClusterRunner, RedisMembership  # noqa: E402

SLICE = 0.25


def main(argv):
    url, group, count, ttl, path = argv[0], argv[1], int(argv[2]), float(argv[3]), argv[4]
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pid = os.getpid()

    def new_worker(task):
        def run(ctx):
            while True:
                start = time.time()
                done = not ctx.sleep(SLICE)
                os.write(log, b"%d %d %.6f %.6f\n" % (task, pid, start, time.time()))
                if done:
                    return

        return run

    runner = ClusterRunner(
        new_worker, membership=RedisMembership(url, group, ttl=ttl), name="member", stop_timeout=5.0
    )
    runner.apply_tasks(range(count))
    print("ready", runner.member, flush=True)
    stdin = FileObjectPosix(sys.stdin.fileno(), "r", close=False)
    for line in stdin:
        command = line.strip()
        if command == "owned":
            owned = sorted(runner.owned())
            print("owned", len(owned), ",".join(map(str, owned)) or "-", flush=True)
        elif command == "stop":
            break
    print("stopped", runner.stop(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
