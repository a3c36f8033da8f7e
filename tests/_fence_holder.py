"""
A leader for the split-brain tests: ``python _fence_holder.py redis <url> <name> <ttl> | file <path>``.

It acquires the lock and prints ``held <token> <holder>``, then obeys one
command per stdin line, printing one line per command, so the test
synchronises on lines, never on time:

- ``claim <key>``: ``lock.claim(key, 60)``; prints the `ClaimResult` value
  and whether the lease is still held.
- ``block <seconds> <path>``: unpatched CPU work that never yields to the hub
  (the renewal greenlet cannot run) until at least *seconds* passed and
  *path* exists; prints ``unblocked <seconds blocked>``.

The process keeps believing it leads: nothing here checks ``is_held`` before
claiming, exactly like a leader that was paused between its check and its
claim.
"""

import os
import sys
import time

from gevent import monkey

monkey.patch_all()

from gevent.fileobject import FileObjectPosix  # noqa: E402

from greenworks.coordination import FileLock, RedisLock  # noqa: E402


def main(argv):
    lock = RedisLock(argv[1], argv[2], ttl=float(argv[3])) if argv[0] == "redis" else FileLock(argv[1])
    if not lock.acquire():
        print("busy", flush=True)
        return
    print("held", lock.token, lock.holder, flush=True)
    stdin = FileObjectPosix(sys.stdin.fileno(), "r", close=False)
    for line in stdin:
        words = line.split()
        if not words:
            break
        if words[0] == "claim":
            result = lock.claim(words[1], 60)
            print(result.value, lock.is_held, flush=True)
        elif words[0] == "block":
            started = time.monotonic()
            # time.monotonic and os.path.exists are plain syscalls: the hub
            # never runs while this loop does.
            while time.monotonic() - started < float(words[1]) or not os.path.exists(words[2]):
                pass
            print("unblocked %.3f" % (time.monotonic() - started), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
