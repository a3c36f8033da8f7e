"""
Leader locks: run something on exactly one process of a cluster.

- :class:`LocalLock` - in-process; the default (one process is always its own leader).
- :class:`FileLock` - one host, many processes (gunicorn workers): ``fcntl.flock``.
- :class:`RedisLock` - many hosts: a Redis lease with a random token (extra ``redis``).
- :func:`singleton` - wrap an `IWorker` so exactly one process runs it.
- :class:`ClaimResult` - what a fenced ``claim()`` answered (truthy only when claimed).
- :func:`release_dead` - free a dead process's Redis leases at once (gunicorn ``child_exit``).

Every lock provides `greenworks.interfaces.IFencedLock` (an `ILeaderLock`
whose leases carry fencing tokens); a `JobRunner` built with ``leader=lock``
runs its due jobs only on the process holding it.
"""

from greenworks.coordination._common import ClaimResult
from greenworks.coordination._file import FileLock
from greenworks.coordination._local import LocalLock
from greenworks.coordination._redis import RedisLock
from greenworks.coordination._registry import release_dead
from greenworks.coordination._singleton import singleton

__all__ = ["ClaimResult", "FileLock", "LocalLock", "RedisLock", "release_dead", "singleton"]
