"""
Leader locks: run something on exactly one process of a cluster.

- :class:`LocalLock` - in-process; the default (one process is always its own leader).
- :class:`FileLock` - one host, many processes (gunicorn workers): ``fcntl.flock``.
- :class:`RedisLock` - many hosts: a Redis lease with a random token (extra ``redis``).
- :func:`singleton` - wrap an `IWorker` so exactly one process runs it.

Every lock provides `greenworks.interfaces.ILeaderLock`; a `JobRunner` built
with ``leader=lock`` runs its due jobs only on the process holding it.
"""

from greenworks.coordination._file import FileLock
from greenworks.coordination._local import LocalLock
from greenworks.coordination._redis import RedisLock
from greenworks.coordination._singleton import singleton

__all__ = ["FileLock", "LocalLock", "RedisLock", "singleton"]
