"""
The per-host lease registry: how a process that holds no lease releases the leases of a dead one.

A Redis lease outlives a process killed with SIGKILL until its ttl passes.
gunicorn's master knows the moment a worker died (its ``child_exit`` hook
gets the worker's pid) but has none of the application's locks: it does
not know which Redis, which key, which holder id. So every `RedisLock`
that acquires a lease, and every `RedisMembership` that joins a group,
writes one small JSON file into a per-host directory::

    <registry>/<pid>.<nonce>.json   {"kind": "lock", "host": ..., "pid": ...,
                                     "holder": ..., "key": ..., "redis": {...}}

and removes it when it releases. :func:`release_dead` reads the files of a
pid, connects to the Redis each one names and releases that lease with the
same compare-and-set the holder itself would use: the key is deleted only
while it still holds the *dead* holder's id (``host:pid:nonce``, unique per
lock instance), so a live holder's lease is never touched, and the fencing
counter is never changed (the next holder's acquisition moves it).

Where: ``$GREENWORKS_LEASE_REGISTRY`` if set, else
``<tempdir>/greenworks-leases`` (created ``0700``; the files are ``0600``
because a Redis URL may carry a password). Master and workers must agree on
it: set the variable in both when the default does not suit (several
applications or users on one host). The registry is best effort: a process
that cannot write it says so once and its leases expire by their ttl, as
without it.
"""

import contextlib
import errno
import json
import logging
import os
import socket
import tempfile
from collections.abc import Callable
from typing import Any

__all__ = ["ENV", "Registration", "connection_spec", "pid_alive", "pid_gone", "registry_dir", "release_dead"]

logger = logging.getLogger(__name__)

#: The environment variable naming the registry directory.
ENV = "GREENWORKS_LEASE_REGISTRY"

_KEEP = ("host", "port", "db", "username", "password", "path")

# Compare-and-delete, the same rule as RedisLock.release: only while the key
# still holds the dead holder's id.
_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def registry_dir(registry: Any = None) -> str | None:
    """Return the registry directory for *registry* (None: the default; False: none)."""
    if registry is False:
        return None
    if registry is None:
        return os.environ.get(ENV) or os.path.join(tempfile.gettempdir(), "greenworks-leases")
    path: str = os.fspath(registry)
    return path


def connection_spec(client: Any) -> dict[str, Any] | None:
    """Return the keyword arguments that rebuild a connection like *client*'s, or None.

    Only plain values are kept (host, port, db, username, password, a unix
    socket path, whether it is TLS), so the spec can be written as JSON.
    """
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not isinstance(kwargs, dict):
        return None
    spec = {k: v for k, v in kwargs.items() if k in _KEEP and isinstance(v, (str, int)) and v is not None}
    kind = getattr(getattr(pool, "connection_class", None), "__name__", "")
    if "path" in spec:
        spec["unix_socket_path"] = spec.pop("path")
    if "SSL" in kind:
        spec["ssl"] = True
    return spec


def pid_alive(pid: int) -> bool:
    """Whether a process *pid* exists on this host and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as f:
            # "pid (comm) S ...": the state follows the last ")".
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# PF_EXITING in /proc/<pid>/stat's flags: the process is past the point of no
# return in exit (the SIGKILL was dequeued, it is closing its files).
_PF_EXITING = 0x4
_SIGKILL_BIT = 1 << (9 - 1)
# Where pid_gone reads; a test points it at fake files for the states a real
# process is in for only microseconds (SIGKILL pending, exiting).
_PROC = "/proc"


def pid_gone(pid: int) -> bool:
    """Whether process *pid* of this host is dead, or can never again run user code.

    True for a pid that does not exist, a zombie, a process already exiting,
    and one with a SIGKILL pending (sent, not yet acted on: it cannot be
    caught, blocked or ignored, and the process dies at its next return from
    the kernel, a matter of microseconds). False when in doubt (no ``/proc``, a
    process of another user that ``/proc`` hides): the safe answer for a
    caller about to take over that process's lease. Never blocks.
    """
    if not pid_alive(pid):
        return True
    try:
        with open("%s/%d/stat" % (_PROC, pid), encoding="ascii", errors="replace") as f:
            fields = f.read().rpartition(")")[2].split()
        if fields[0] in ("Z", "X", "x") or int(fields[6]) & _PF_EXITING:
            return True
        with open("%s/%d/status" % (_PROC, pid), encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & _SIGKILL_BIT:
                    return True
    except (OSError, IndexError, ValueError):
        return not pid_alive(pid)
    return False


class Registration:
    """The registry entry of one lease holder (one lock instance or one member).

    :meth:`write` replaces the entry atomically; :meth:`remove` deletes it.
    File system errors are said once (WARNING) and never raised: without its
    entry a lease just expires by its ttl. Never switches greenlets (a few
    small local file operations).
    """

    __slots__ = ("directory", "path", "_warned", "_logger")

    def __init__(self, directory: str | None, nonce: str, log: logging.Logger | None = None) -> None:
        self.directory = directory
        self.path = (
            None if directory is None else os.path.join(directory, "%d.%s.json" % (os.getpid(), nonce))
        )
        self._warned = False
        self._logger = log or logger

    def write(self, entry: dict[str, Any]) -> None:
        """Write *entry* (plus host and pid) as this holder's registry file."""
        if self.path is None or self.directory is None:
            return
        entry = dict(entry, host=socket.gethostname(), pid=os.getpid())
        tmp = self.path + ".tmp"
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f)
            os.replace(tmp, self.path)
        except (OSError, TypeError, ValueError) as exc:
            if not self._warned:
                self._warned = True
                self._logger.warning(
                    "lease registry %s not writable (%s); a dead process's lease will expire by its"
                    " ttl instead of being released by release_dead()",
                    self.directory,
                    exc,
                )
            return
        _sweep(self.directory)

    def remove(self) -> None:
        """Delete this holder's registry file, if any."""
        if self.path is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def _sweep(directory: str) -> None:
    """Delete the entries of processes that died without anybody releasing them."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        head, _, _ = name.partition(".")
        if not head.isdigit() or not name.endswith(".json"):
            continue
        if not pid_alive(int(head)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def _release_lock(client: Any, entry: dict[str, Any]) -> int:
    return int(client.eval(_RELEASE_LOCK, 1, entry["key"], entry["holder"]))


def _release_member(client: Any, entry: dict[str, Any]) -> int:
    from greenworks._cluster_membership import release_member

    return release_member(client, entry)


_RELEASERS: dict[str, Callable[[Any, dict[str, Any]], int]] = {
    "lock": _release_lock,
    "member": _release_member,
}


def release_dead(
    pid: int,
    *,
    host: str | None = None,
    registry: Any = None,
    timeout: float = 1.0,
    logger: logging.Logger | None = None,
) -> int:
    """Release every Redis lease a dead process *pid* of this host held; return how many.

    Meant for gunicorn's master, where the worker's pid is known the moment
    it died::

        # gunicorn.conf.py
        from greenworks.coordination import release_dead

        def child_exit(server, worker):
            release_dead(worker.pid)

    For each registry entry of *pid* (a `RedisLock` lease, a `RedisMembership`
    member with all its task leases) it connects to the Redis the entry names
    and releases with compare-and-set: only what still holds the dead
    holder's id is deleted, so a live holder is never affected, and no
    fencing counter moves. Entries are removed afterwards. Refuses (returns
    0 and logs a WARNING) while a process with that pid is alive.

    Blocks for at most *timeout* seconds per Redis server (connect and
    call); cooperative under gevent's monkey-patching, plain blocking
    otherwise (gunicorn's master is not patched). Never raises for an
    unreachable Redis or a broken entry: it logs a WARNING and goes on; that
    lease then expires by its ttl.

    :param int pid: the dead process.
    :param str host: only entries written on this host name (default: this host's).
    :param registry: the registry directory (default: see the module doc).
    :param float timeout: seconds per Redis server.
    :return int: leases released (a member counts once).
    :raises InvalidArgument: *pid* is not an int > 0, or *timeout* not > 0.
    """
    from greenworks import _checks
    from greenworks.coordination._common import check_ttl

    log = logger or logging.getLogger(__name__)
    _checks.count("pid", pid, minimum=1)
    timeout = check_ttl("timeout", timeout) or 1.0
    directory = registry_dir(registry)
    if directory is None:
        return 0
    if pid_alive(pid):
        log.warning("release_dead(%d): that process is alive; not releasing its leases", pid)
        return 0
    host = host or socket.gethostname()
    prefix = "%d." % pid
    try:
        names = sorted(n for n in os.listdir(directory) if n.startswith(prefix) and n.endswith(".json"))
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            log.warning("release_dead(%d): cannot read the lease registry %s: %s", pid, directory, exc)
        return 0
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    released = 0
    clients: dict[str, Any] = {}
    try:
        for name in names:
            path = os.path.join(directory, name)
            try:
                with open(path, encoding="utf-8") as f:
                    entry = json.load(f)
                if entry.get("host") != host:
                    continue
                spec = entry["redis"]
                ident = json.dumps(spec, sort_keys=True)
                client = clients.get(ident)
                if client is None:
                    client = clients[ident] = redis.Redis(
                        **spec,
                        socket_timeout=timeout,
                        socket_connect_timeout=timeout,
                        retry=Retry(NoBackoff(), 0),
                    )
                count = _RELEASERS[entry["kind"]](client, entry)
                released += count
                log.info("release_dead(%d): %s %s released (%d)", pid, entry["kind"], entry.get("key"), count)
            except (OSError, ValueError, KeyError, TypeError, redis.RedisError) as exc:
                log.warning(
                    "release_dead(%d): entry %s not released (%s); it expires by its ttl", pid, name, exc
                )
            with contextlib.suppress(OSError):
                os.unlink(path)
    finally:
        for client in clients.values():
            with contextlib.suppress(Exception):
                client.close()
    return released
