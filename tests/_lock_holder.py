"""
A lock-holding child process for the coordination tests (run with ``python -m`` style path).

Usage: ``python _lock_holder.py file <path> | claim <path> <key>... | redis <url> <name> <ttl>``.
It prints one line per outcome and then, for the holders, waits for stdin to
close (or for a SIGKILL), so the test synchronises on lines, never on time.
"""

import sys

from gevent import monkey

monkey.patch_all()

from greenworks.coordination import FileLock, RedisLock  # noqa: E402


def main(argv):
    kind = argv[0]
    if kind == "file":
        lock = FileLock(argv[1])
        print("held" if lock.acquire() else "busy", lock.holder, flush=True)
    elif kind == "claim":
        lock = FileLock(argv[1])
        sys.stdin.readline()  # start line: every racer begins together
        won = [key for key in argv[2:] if lock.claim(key, 60)]
        print(" ".join(won), flush=True)
        return
    elif kind == "redis":
        lock = RedisLock(argv[1], argv[2], ttl=float(argv[3]))
        print("held" if lock.acquire() else "busy", lock.holder, flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main(sys.argv[1:])
