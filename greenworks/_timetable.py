"""
When each of a JobRunner's jobs is next due, and what happened to it: `Timetable`.

A job whose schedule says when it is next due (an `ISchedule`:
``next_after``) sits in a heap ordered by due time, so the runner sleeps until
the earliest one instead of waking on every tick: a runner of 1,000 hourly
jobs wakes hourly. A job whose schedule only answers ``is_run(now)`` (a
plain predicate, a custom `IJob`) is *polled*: asked on every tick.

When the runner wakes late (its hub was blocked, or no process ran while a
job store kept the due time), :meth:`Timetable.due` applies the misfire
rules to the due times that passed:

- a due time older than the job's ``misfire_grace_time`` is *misfired*:
  skipped, counted and reported (``None``: however late, it runs);
- of the due times within grace, ``coalesce=True`` runs the latest once,
  ``coalesce=False`` runs each of them, oldest first.

With a job store the next due time and the paused flag live in the store
too, so a runner that starts after a deploy picks up the due time it missed
(and the misfire rules decide), and the store's compare-and-set claim makes
sure a due time runs once across restarts and processes.

Nothing here switches greenlets except the store calls (a SQLite or Redis
round trip).
"""

import datetime
import heapq
import logging
from typing import Any

__all__ = ["Entry", "Timetable"]

logger = logging.getLogger("greenworks.jobs")

_UTC = datetime.timezone.utc
#: The most due times looked at for one job in one wake-up (a long outage of a fast schedule).
MAX_OCCURRENCES = 10000


class Entry:
    """One job's place in the timetable."""

    __slots__ = ("job", "id", "next_due", "paused", "misfires", "polled", "version", "step", "grace")

    def __init__(self, job: Any, job_id: str, polled: bool) -> None:
        self.job = job
        self.id = job_id
        #: The job's misfire_grace_time (read once: it is asked on every due time).
        self.grace: float | None = getattr(job, "misfire_grace_time", None)
        #: ``step(due) -> next due``, POSIX seconds (see `_stepper`); None for a polled entry.
        self.step: Any = None
        #: POSIX time of the next due time, or None (no more, or polled).
        self.next_due: float | None = None
        self.paused = False
        self.misfires = 0
        self.polled = polled
        self.version = 0


def _next_after(schedule: Any) -> Any:
    next_after = getattr(schedule, "next_after", None)
    return next_after if callable(next_after) else None


def _stepper(schedule: Any, zone: Any) -> Any:
    """``step(due) -> next due`` on POSIX seconds, for this schedule.

    ``Every`` and ``Interval`` step in integer milliseconds (a wake-up of
    1,000 jobs must not build 2,000 datetimes); any other schedule goes
    through ``next_after`` with aware datetimes in the runner's zone.
    """
    fast = getattr(schedule, "_next_after_ms", None)
    if callable(fast):

        def step(due: float) -> float | None:
            fire = fast(round(due * 1000))
            return None if fire is None else fire / 1000.0

        return step
    next_after = schedule.next_after

    def slow(due: float) -> float | None:
        fire = next_after(datetime.datetime.fromtimestamp(due, zone()))
        return None if fire is None else fire.timestamp()

    return slow


class Timetable:
    """The due times of a runner's jobs. See the module docstring.

    :param zone: ``zone()`` gives the tzinfo schedules are asked in.
    :param store: an `IJobStore`, or None (state kept in this process only).
    """

    def __init__(self, zone: Any, store: Any = None) -> None:
        self._zone = zone
        self.store = store
        self.entries: dict[str, Entry] = {}
        # Entries are bucketed by due time: jobs that share a due time (most
        # do) cost one heap entry, not one each.
        self._buckets: dict[float, list[tuple[int, Entry]]] = {}
        self._keys: list[float] = []
        # The polled, unpaused entries' jobs and ids, in order, built once per
        # change rather than on every tick (a tick of 1,000 polled jobs would
        # otherwise walk 1,000 entries before asking the first is_run).
        # The third item: whether any entry is polled (paused ones too).
        self._polled: tuple[list[Any], list[str], bool] | None = None

    # -- membership ------------------------------------------------------------

    def _dt(self, timestamp: float) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(timestamp, self._zone())

    def add(self, job: Any, job_id: str, now: float) -> Entry:
        """Add (or replace) *job*; its first due time is its schedule's first after *now*.

        With a store, a due time the store kept (missed while no process
        ran) and the stored paused flag win. Blocks for a store round trip.
        """
        old = self.entries.pop(job_id, None)
        if old is not None:
            old.version += 1
        schedule = getattr(job, "schedule", None)
        next_after = _next_after(schedule)
        entry = Entry(job, job_id, polled=next_after is None)
        if next_after is not None:
            entry.step = _stepper(schedule, self._zone)
            first = next_after(self._dt(now))
            entry.next_due = None if first is None else first.timestamp()
            if self.store is not None:
                state = self.store.add(job_id, next_due=first)
                if state is not None:
                    entry.paused = bool(state.paused)
                    if state.next_due is not None:
                        entry.next_due = state.next_due.timestamp()
        self.entries[job_id] = entry
        self._polled = None
        self._push(entry)
        return entry

    def move_to_end(self, job_id: str) -> None:
        """Put the entry of *job_id* last (polled jobs are asked in the order of the entries)."""
        self.entries[job_id] = self.entries.pop(job_id)
        self._polled = None

    def remove(self, job_id: str) -> Entry | None:
        entry = self.entries.pop(job_id, None)
        if entry is not None:
            entry.version += 1
            self._polled = None
            if self.store is not None:
                self.store.remove(job_id)
        return entry

    def clear(self) -> None:
        for job_id in list(self.entries):
            self.remove(job_id)

    def set_paused(self, entry: Entry, paused: bool, now: float) -> None:
        """Pause or resume *entry*; a resumed job is next due after *now* (missed times are not run)."""
        entry.paused = paused
        self._polled = None
        if self.store is not None:
            self.store.set_paused(entry.id, paused)
        if not paused and not entry.polled:
            next_after = _next_after(entry.job.schedule)
            following = next_after(self._dt(now))
            self._advance(entry, None if following is None else following.timestamp())

    def _push(self, entry: Entry) -> None:
        due = entry.next_due
        if due is None or entry.polled:
            return
        bucket = self._buckets.get(due)
        if bucket is None:
            bucket = self._buckets[due] = []
            heapq.heappush(self._keys, due)
        bucket.append((entry.version, entry))

    def _advance(self, entry: Entry, next_due: float | None) -> None:
        entry.version += 1
        entry.next_due = next_due
        self._push(entry)
        if self.store is not None:
            self.store.set_next_due(entry.id, None if next_due is None else self._dt(next_due))

    def polled(self) -> list[Entry]:
        """The entries asked on every tick, in the order they were added."""
        return [entry for entry in self.entries.values() if entry.polled]

    def polled_jobs(self) -> tuple[list[Any], list[str]]:
        """The jobs and ids of the polled entries not paused, in order. Never switches.

        Built once per change to the entries and shared: the caller must not modify the lists.
        """
        polled = self._polled or self._build_polled()
        return polled[0], polled[1]

    def has_polled(self) -> bool:
        """Whether any entry is polled (paused ones too: their ticks still pass and are reported)."""
        return (self._polled or self._build_polled())[2]

    def _build_polled(self) -> tuple[list[Any], list[str], bool]:
        jobs: list[Any] = []
        ids: list[str] = []
        any_polled = False
        for entry in self.entries.values():
            if entry.polled:
                any_polled = True
                if not entry.paused:
                    jobs.append(entry.job)
                    ids.append(entry.id)
        self._polled = (jobs, ids, any_polled)
        return self._polled

    def earliest(self) -> float | None:
        """The earliest due time of a scheduled entry (POSIX), or None.

        A bucket whose entries all moved away may still answer; the wake-up
        it causes finds nothing due and costs a look.
        """
        keys = self._keys
        return keys[0] if keys else None

    # -- due times ---------------------------------------------------------------

    def due(self, now: float) -> list[tuple[Entry, list[float], list[float]]]:
        """Take every entry due at or before *now*: ``[(entry, runs, misfired), ...]``.

        *runs* are the due times to run (POSIX, oldest first), *misfired*
        those skipped as too late. Each entry moves on to its first due time
        after *now* (an entry with none left stays, with ``next_due`` None).
        Store state is updated by the caller's claim (see :meth:`claim`).
        """
        keys = self._keys
        buckets = self._buckets
        entries = self.entries
        taken = []
        while keys and keys[0] <= now:
            for version, entry in buckets.pop(heapq.heappop(keys)):
                if version == entry.version and entries.get(entry.id) is entry:
                    taken.append(entry)
        result = []
        store = self.store
        for entry in taken:
            due = entry.next_due
            assert due is not None  # _push buckets only entries with a due time (same version)
            following = entry.step(due)
            grace = entry.grace
            if following is not None and following > now and (grace is None or now - due <= grace):
                # The usual case, on time: one due time to run, nothing missed.
                runs: list[float] = [due]
                misfired: list[float] = []
            else:
                runs, misfired, following = self._occurrences(entry, now)
            entry.version += 1
            entry.next_due = following
            self._push(entry)
            if misfired:
                entry.misfires += len(misfired)
            if not runs and store is not None:
                # Nothing to claim this time: the store learns the next due time directly.
                store.set_next_due(entry.id, None if following is None else self._dt(following))
            result.append((entry, runs, misfired))
        return result

    def _occurrences(self, entry: Entry, now: float) -> tuple[list[float], list[float], float | None]:
        job = entry.job
        step = entry.step
        grace = entry.grace
        coalesce = getattr(job, "coalesce", True)
        due = entry.next_due
        following = None if due is None else step(due)
        if following is None or following > now:
            # The usual case, on time: one due time, nothing missed.
            passed = [] if due is None else [due]
        else:
            assert due is not None  # following is None whenever due is
            passed = [due]
            due = following
            while due is not None and due <= now and len(passed) < MAX_OCCURRENCES:
                passed.append(due)
                due = step(due)
            if due is not None and due <= now:
                # A very long gap: jump to the first due time after now.
                due = step(now)
            following = due
        if grace is None:
            eligible, misfired = passed, []
        else:
            eligible = [d for d in passed if now - d <= grace]
            misfired = [d for d in passed if now - d > grace]
        if coalesce and len(eligible) > 1:
            eligible = eligible[-1:]
        return eligible, misfired, following

    def next_run_time(self, entry: Entry) -> datetime.datetime | None:
        if entry.paused or entry.next_due is None:
            return None
        return self._dt(entry.next_due)

    # -- the store ----------------------------------------------------------------

    def claim(self, claims: list[tuple[Entry, float]]) -> list[bool]:
        """Claim ``(entry, due)`` runs in the store (one round trip); True where this process won.

        Without a store every claim wins (the in-process timetable already
        runs each due time once). The store's answer also carries the
        entry's next due time, so a process that starts later knows it.
        """
        if self.store is None or not claims:
            return [True] * len(claims)
        batch = []
        for entry, due in claims:
            following = entry.next_due
            batch.append(
                (entry.id, self._dt(due).astimezone(_UTC), None if following is None else self._dt(following))
            )
        try:
            answers = self.store.claim_many(batch)
        except Exception:
            logger.exception("job store %r: claim_many failed; the due jobs are not run", self.store)
            return [False] * len(claims)
        return [bool(answer) for answer in answers]

    def record(self, job_id: str, last_run: Any) -> None:
        if self.store is not None:
            self.store.record_run(job_id, last_run)
