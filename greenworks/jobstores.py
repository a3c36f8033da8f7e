"""
Job stores: the state of scheduled jobs that survives restarts and agrees across processes.

A store keeps, per job id, a `JobState`: the last due time claimed for
running, the next due time, the paused flag and the last run's outcome. It
never keeps functions: jobs are declared in code at start-up, and the store
only holds their state. Every store provides `IJobStore`:

- :class:`MemoryJobStore` -- this process only, lost on exit (the default).
- :class:`SQLiteJobStore` -- a file on one host (WAL, safe for several
  gunicorn workers on that host).
- :class:`RedisJobStore` -- one Redis server, shared by a cluster.

How a runner uses one::

    store = SQLiteJobStore("/var/lib/app/jobs.sqlite3")
    state = store.add("report", next_due=first_due)   # at start-up: the stored state
    if state.next_due is not None and state.next_due < now:
        ...                                           # missed while no process ran: catch up
    if store.claim("report", due, next_due=following):  # exactly one caller wins a due time
        run_the_job()
        store.record_run("report", LastRun(due, started, duration, "ok"))

`claim` is the one atomic compare-and-set: it succeeds for exactly one
caller per due time, and never for a due time at or before the last one
recorded, so a run is never repeated across restarts or processes.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from greenworks import _jobstores_core as core
from greenworks._jobstores_core import Claim, JobState, LastRun
from greenworks._jobstores_redis import RedisJobStore
from greenworks._jobstores_sqlite import SQLiteJobStore
from greenworks.interfaces import IJobStore

__all__ = ["Claim", "JobState", "LastRun", "MemoryJobStore", "RedisJobStore", "SQLiteJobStore"]


class _Record:
    __slots__ = ("last_due", "next_due", "paused", "last_run")

    def __init__(self, next_due: int | None = None) -> None:
        self.last_due: int | None = None
        self.next_due = next_due
        self.paused = False
        self.last_run: LastRun | None = None

    def state(self, job: str) -> JobState:
        return JobState(
            job, core.from_us(self.last_due), core.from_us(self.next_due), self.paused, self.last_run
        )


@implementer(IJobStore)
class MemoryJobStore:
    """Default implementation of `IJobStore` in this process's memory.

    Nothing survives the process, and only callers sharing this object
    agree; that is all a single process without a persistent store needs.
    No method blocks or switches greenlets; none can fail but on bad
    arguments, so `error` is always None.
    """

    name = "memory"
    error = None

    def __init__(self) -> None:
        self._jobs: dict[str, _Record] = {}

    def add(self, job_id: str, next_due: Any = None) -> JobState:
        job = core.job_id(job_id)
        record = self._jobs.get(job)
        if record is None:
            record = self._jobs[job] = _Record(core.to_us("next_due", next_due, none=True))
        return record.state(job)

    def get(self, job_id: str) -> JobState | None:
        job = core.job_id(job_id)
        record = self._jobs.get(job)
        return None if record is None else record.state(job)

    def states(self) -> dict[str, JobState]:
        return {job: record.state(job) for job, record in self._jobs.items()}

    def claim(self, job_id: str, due: Any, next_due: Any = None) -> Claim:
        return self.claim_many([(job_id, due, next_due)])[0]

    def claim_many(self, claims: Any) -> list[Claim]:
        answers = []
        for job, due, next_due in core.claims(claims):
            record = self._jobs.get(job)
            if record is None:
                record = self._jobs[job] = _Record()
            if record.paused:
                answers.append(Claim.PAUSED)
            elif record.last_due is not None and due <= record.last_due:
                answers.append(Claim.TAKEN)
            else:
                record.last_due = due
                if next_due is not None:
                    record.next_due = next_due
                answers.append(Claim.CLAIMED)
        return answers

    def _record(self, job_id: str) -> _Record:
        job = core.job_id(job_id)
        record = self._jobs.get(job)
        if record is None:
            record = self._jobs[job] = _Record()
        return record

    def set_next_due(self, job_id: str, next_due: Any) -> bool:
        value = core.to_us("next_due", next_due, none=True)
        self._record(job_id).next_due = value
        return True

    def set_paused(self, job_id: str, paused: bool) -> bool:
        self._record(job_id).paused = core.paused(paused)
        return True

    def record_run(self, job_id: str, last_run: LastRun) -> bool:
        value = core.last_run(last_run)
        self._record(job_id).last_run = value
        return True

    def remove(self, job_id: str) -> bool:
        self._jobs.pop(core.job_id(job_id), None)
        return True

    def snapshot(self) -> dict[str, Any]:
        return {"kind": "memory", "name": self.name, "error": None, "errors_total": 0}

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "<greenworks.jobstores.MemoryJobStore %d jobs>" % len(self._jobs)
