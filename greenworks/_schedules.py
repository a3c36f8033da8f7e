"""
Ready-made ``is_run`` predicates for :class:`~greenworks.jobs.JobRunner` jobs.

A schedule is a pure strategy object (no greenlet, no clock): it answers
"is a job due at *now*?" for the tick time the runner passes in. Both kinds
are callable (``schedule(now)``) and also offer ``is_run(now)``, so either
spelling can be given to :class:`Job`.

- :class:`Every` fires on multiples of a fixed period counted from the Unix
  epoch (UTC), e.g. ``Every(minutes=5)`` at :00, :05, :10 ...
- :class:`Cron` fires when a cron expression matches, evaluated in the zone
  of *now* (the runner's ``timezone``) unless the schedule names its own.
"""

from zope.interface import implementer

from greenworks import _checks
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import IJob

# The strategies live in the public module now; kept importable from here.
from greenworks.schedules import Cron, Every

__all__ = ["Cron", "Every", "Job", "job"]


def _predicate(schedule):
    if schedule is None:
        return None
    is_run = getattr(schedule, "is_run", None)
    if callable(is_run):
        return is_run
    if callable(schedule):
        return schedule
    raise invalid_argument("schedule", schedule, "None, a callable(now) or an object with is_run(now)")


@implementer(IJob)
class Job:
    """Default implementation of `IJob`: a function with an id and a schedule.

    :param str id: the job's id (dedupe key, result key, greenlet name).
    :param fn: called with no arguments by ``run()``; its return value is
        the job's value.
    :param schedule: ``None`` (due on every tick), a callable ``(now) -> bool``,
        or an object with ``is_run(now)`` such as :class:`Every` or :class:`Cron`.
    :raises InvalidArgument: for an empty or non-str id, a non-callable *fn*,
        or a schedule of neither kind.
    """

    __slots__ = ("id", "fn", "schedule", "_is_run")

    def __init__(self, id, fn, schedule=None):
        _checks.name("id", id)
        if not callable(fn):
            raise invalid_argument("fn", fn, "a callable taking no arguments")
        self._is_run = _predicate(schedule)
        self.id = id
        self.fn = fn
        self.schedule = schedule

    def get_id(self):
        return self.id

    def is_run(self, now):
        return True if self._is_run is None else bool(self._is_run(now))

    def run(self):
        return self.fn()

    def __repr__(self):
        return "<greenworks.jobs.Job %r schedule=%r>" % (self.id, self.schedule)


def job(id, fn, schedule=None):
    """Return a :class:`Job`; ``job("report", send_report, Cron("0 8 * * *"))``."""
    return Job(id, fn, schedule)
