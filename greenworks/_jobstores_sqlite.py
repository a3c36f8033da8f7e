"""
`SQLiteJobStore`: job state in a SQLite file, shared by the processes of one host.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar, cast

import gevent
from gevent.monkey import get_original
from zope.interface import implementer

from greenworks import _jobstores_core as core
from greenworks._checks import seconds as check_seconds
from greenworks._jobstores_core import Claim, JobState, LastRun
from greenworks.exceptions import InvalidArgument, invalid_argument
from greenworks.interfaces import IJobStore

__all__ = ["SQLiteJobStore"]

_T = TypeVar("_T")

logger = logging.getLogger(__name__)
_default_logger = logger

# A real lock (not gevent's): the transactions run on hub threadpool threads.
_ThreadLock = get_original("threading", "Lock")
# Connections inherited over fork are never used nor closed in the child
# (SQLite forbids both); they are kept here so no finaliser closes them.
_INHERITED: list[sqlite3.Connection] = []
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_COLUMNS = "id, last_due, next_due, paused, run_due, run_started, run_duration, run_outcome, run_error"


def _last_run(row: Any) -> LastRun | None:
    if row[4] is None:
        return None
    try:
        # from_us may give None: LastRun checks its fields when built, and the except takes a bad row.
        return LastRun(core.from_us(row[4]), core.from_us(row[5]), row[6], row[7], row[8])  # type: ignore[arg-type]
    except (InvalidArgument, TypeError):
        return None  # a row somebody else wrote badly: show no outcome rather than fail


def _state(row: Any) -> JobState:
    return JobState(row[0], core.from_us(row[1]), core.from_us(row[2]), bool(row[3]), _last_run(row))


def _write(conn: sqlite3.Connection, body: Callable[[], _T]) -> _T:
    # IMMEDIATE takes the write lock up front, so two processes never both
    # read a row and then race to update it.
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = body()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


@implementer(IJobStore)
class SQLiteJobStore:
    """Default implementation of `IJobStore` in a SQLite file, for the processes of one host.

    One table (*table*, created if missing) with one row per job. The file
    is put in WAL mode (readers never wait for the writer) with
    ``synchronous=NORMAL`` (a commit survives a crash of the process, and a
    power loss loses at most the last few) and a busy timeout of *timeout*
    seconds. Every write is one short ``BEGIN IMMEDIATE`` transaction, and
    `claim` is a single conditional ``UPDATE`` inside it, so among all
    processes using the file exactly one wins a due time. Safe for several
    gunicorn workers: each process opens its own connection (also after a
    fork: a connection inherited from the parent is never touched).

    SQLite calls run on gevent's hub threadpool, so waiting for another
    process's lock blocks the calling greenlet, never the hub. Calls from one
    store object run one at a time.

    :param path: the database file (``str`` or ``os.PathLike``); its directory
        must exist and be writable (WAL adds ``-wal`` and ``-shm`` files).
    :keyword str table: the table name (letters, digits, underscores).
    :keyword float timeout: seconds to wait for another process's write lock.
    :raises InvalidArgument: for a bad argument, a missing or read-only
        directory, or a file that cannot be opened as a SQLite database in WAL mode.
    """

    def __init__(
        self,
        path: Any,
        *,
        table: str = "greenworks_jobs",
        timeout: float = 5.0,
        logger: logging.Logger | None = None,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise invalid_argument("path", path, "a file path (str or os.PathLike)")
        path = os.fspath(path)
        if not isinstance(path, str) or path in ("", ":memory:") or path.startswith("file:"):
            raise invalid_argument("path", path, "a file path (MemoryJobStore keeps state in memory)")
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise invalid_argument(
                "path", path, "a file in an existing directory (%s does not exist)" % directory
            )
        if not os.access(directory, os.W_OK | os.X_OK):
            raise invalid_argument("path", path, "a file in a writable directory (%s is not)" % directory)
        if not isinstance(table, str) or not _TABLE.match(table):
            raise invalid_argument("table", table, "an SQL name: letters, digits and underscores")
        self._path = path
        self._table = table
        self._timeout = check_seconds("timeout", timeout, positive=True)
        self._health = core._Health("sqlite:%s" % path, logger or _default_logger)
        self._pid = os.getpid()
        self._lock = _ThreadLock()
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = self._open()
        except sqlite3.Error as exc:
            raise InvalidArgument("path %r cannot be opened as a job store: %s" % (path, exc)) from exc

    @property
    def name(self) -> str:
        return "sqlite:%s" % self._path

    @property
    def path(self) -> str:
        """The database file (read-only)."""
        return self._path

    @property
    def error(self) -> str | None:
        return self._health.error

    # -- the connection ----------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA busy_timeout = %d" % max(1, round(self._timeout * 1000)))
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError("the file refused WAL mode (journal_mode is %s)" % mode)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS %s (id TEXT PRIMARY KEY NOT NULL, last_due INTEGER,"
                " next_due INTEGER, paused INTEGER NOT NULL DEFAULT 0, run_due INTEGER, run_started INTEGER,"
                " run_duration REAL, run_outcome TEXT, run_error TEXT)" % self._table
            )
        except BaseException:
            conn.close()
            raise
        return conn

    def _locked(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        with self._lock:
            if self._conn is None:
                self._conn = self._open()
            return fn(self._conn, *args)

    def _call(self, operation: str, fn: Callable[..., _T], default: _T, *args: Any) -> _T:
        if os.getpid() != self._pid:
            # A forked child: leave the parent's connection and lock alone.
            if self._conn is not None:
                _INHERITED.append(self._conn)
            self._pid, self._conn, self._lock = os.getpid(), None, _ThreadLock()
        try:
            result = cast(_T, gevent.get_hub().threadpool.apply(self._locked, (fn, args)))
        except sqlite3.Error as exc:
            self._health.failed(operation, exc)
            return default
        self._health.ok()
        return result

    # -- IJobStore -----------------------------------------------------------------

    def add(self, job_id: str, next_due: Any = None) -> JobState | None:
        job = core.job_id(job_id)
        value = core.to_us("next_due", next_due, none=True)

        def add(conn: sqlite3.Connection) -> JobState:
            def body() -> Any:
                conn.execute(
                    "INSERT OR IGNORE INTO %s (id, next_due) VALUES (?, ?)" % self._table, (job, value)
                )
                return conn.execute(
                    "SELECT %s FROM %s WHERE id = ?" % (_COLUMNS, self._table), (job,)
                ).fetchone()

            return _state(_write(conn, body))

        return self._call("add", add, None)

    def get(self, job_id: str) -> JobState | None:
        job = core.job_id(job_id)

        def get(conn: sqlite3.Connection) -> JobState | None:
            row = conn.execute("SELECT %s FROM %s WHERE id = ?" % (_COLUMNS, self._table), (job,)).fetchone()
            return None if row is None else _state(row)

        return self._call("get", get, None)

    def states(self) -> dict[str, JobState]:
        def states(conn: sqlite3.Connection) -> dict[str, JobState]:
            rows = conn.execute("SELECT %s FROM %s ORDER BY id" % (_COLUMNS, self._table)).fetchall()
            return {row[0]: _state(row) for row in rows}

        return self._call("states", states, {})

    def claim(self, job_id: str, due: Any, next_due: Any = None) -> Claim:
        return self.claim_many([(job_id, due, next_due)])[0]

    def claim_many(self, claims: Any) -> list[Claim]:
        items = core.claims(claims)
        if not items:
            return []
        table = self._table

        def claim(conn: sqlite3.Connection) -> list[Claim]:
            def body() -> list[Claim]:
                answers = []
                for job, due, next_due in items:
                    conn.execute("INSERT OR IGNORE INTO %s (id) VALUES (?)" % table, (job,))
                    cursor = conn.execute(
                        "UPDATE %s SET last_due = ?, next_due = COALESCE(?, next_due)"
                        " WHERE id = ? AND paused = 0 AND (last_due IS NULL OR last_due < ?)" % table,
                        (due, next_due, job, due),
                    )
                    if cursor.rowcount == 1:
                        answers.append(Claim.CLAIMED)
                    else:
                        (paused,) = conn.execute(
                            "SELECT paused FROM %s WHERE id = ?" % table, (job,)
                        ).fetchone()
                        answers.append(Claim.PAUSED if paused else Claim.TAKEN)
                return answers

            return _write(conn, body)

        return self._call("claim", claim, [Claim.ERROR] * len(items))

    def _upsert(self, operation: str, job_id: str, columns: str, values: tuple[Any, ...]) -> bool:
        job = core.job_id(job_id)
        names = columns.split(", ")
        sql = "INSERT INTO %s (id, %s) VALUES (?%s) ON CONFLICT (id) DO UPDATE SET %s" % (
            self._table,
            columns,
            ", ?" * len(names),
            ", ".join("%s = excluded.%s" % (n, n) for n in names),
        )

        def upsert(conn: sqlite3.Connection) -> bool:
            _write(conn, lambda: conn.execute(sql, (job, *values)))
            return True

        return self._call(operation, upsert, False)

    def set_next_due(self, job_id: str, next_due: Any) -> bool:
        return self._upsert(
            "set_next_due", job_id, "next_due", (core.to_us("next_due", next_due, none=True),)
        )

    def set_paused(self, job_id: str, paused: bool) -> bool:
        return self._upsert("set_paused", job_id, "paused", (int(core.paused(paused)),))

    def record_run(self, job_id: str, last_run: LastRun) -> bool:
        run = core.last_run(last_run)
        values = (
            core.to_us("due", run.due),
            core.to_us("started_at", run.started_at),
            run.duration,
            run.outcome,
            run.error,
        )
        return self._upsert(
            "record_run", job_id, "run_due, run_started, run_duration, run_outcome, run_error", values
        )

    def remove(self, job_id: str) -> bool:
        job = core.job_id(job_id)

        def remove(conn: sqlite3.Connection) -> bool:
            _write(conn, lambda: conn.execute("DELETE FROM %s WHERE id = ?" % self._table, (job,)))
            return True

        return self._call("remove", remove, False)

    def snapshot(self) -> dict[str, Any]:
        return {
            "kind": "sqlite",
            "name": self.name,
            "error": self.error,
            "errors_total": self._health.errors_total,
        }

    def close(self) -> None:
        def close(conn: sqlite3.Connection) -> None:
            conn.close()
            self._conn = None

        if self._conn is not None and os.getpid() == self._pid:
            self._call("close", close, None)

    def __repr__(self) -> str:
        return "<greenworks.jobstores.SQLiteJobStore %r table=%r>" % (self._path, self._table)
