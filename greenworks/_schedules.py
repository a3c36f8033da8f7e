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

import datetime

from zope.interface import implementer

from greenworks import _checks
from greenworks._checks import is_real
from greenworks.exceptions import InvalidScheduleError, invalid_argument
from greenworks.interfaces import IJob

__all__ = ["Cron", "Every", "Job", "job"]

_ONE_MICROSECOND = datetime.timedelta(microseconds=1)


def _seconds(name, value):
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if not is_real(value):
        raise InvalidScheduleError("%s must be a number of seconds or a timedelta, got %r" % (name, value))
    return float(value)


class Every:
    """Due on every multiple of a fixed period since the Unix epoch, plus *offset*.

    ``Every(minutes=5)`` is due at 00:00, 00:05, 00:10 UTC and so on;
    ``Every(hours=1, offset=datetime.timedelta(minutes=30))`` at every half
    past. Periods are aligned on UTC, so ``Every(days=1)`` is midnight UTC;
    use :class:`Cron` for boundaries in a local zone.

    *now* is compared to the millisecond, so the tick times a runner passes
    (exact boundaries of its ``tick``) match exactly.

    :raises InvalidScheduleError: if the period is not positive or not a whole
        number of milliseconds, or an argument is not a number.
    """

    __slots__ = ("_period_ms", "_offset_ms", "_text")

    def __init__(self, *, days=0, hours=0, minutes=0, seconds=0, offset=0):
        total = (
            _seconds("days", days) * 86400
            + _seconds("hours", hours) * 3600
            + _seconds("minutes", minutes) * 60
            + _seconds("seconds", seconds)
        )
        period_ms = round(total * 1000)
        text = "Every(days=%r, hours=%r, minutes=%r, seconds=%r)" % (days, hours, minutes, seconds)
        if period_ms <= 0 or abs(period_ms - total * 1000) > 1e-6:
            raise InvalidScheduleError(
                "%s: the period must be a positive whole number of milliseconds, got %r s" % (text, total)
            )
        self._period_ms = period_ms
        self._offset_ms = round(_seconds("offset", offset) * 1000) % period_ms
        self._text = text

    @property
    def period(self):
        """The period in seconds (float, read-only)."""
        return self._period_ms / 1000.0

    def is_run(self, now):
        """Return whether *now* (an aware datetime) falls on this schedule."""
        ms = round(now.timestamp() * 1000)
        return (ms - self._offset_ms) % self._period_ms == 0

    __call__ = is_run

    def __repr__(self):
        return "<greenworks.jobs.%s>" % self._text


def _croniter():
    try:
        from croniter import croniter
    except ImportError as exc:  # pragma: no cover - exercised by a test that hides the module
        raise ImportError(
            "greenworks.jobs.Cron needs the croniter package: pip install 'greenworks[cron]'"
        ) from exc
    return croniter


class Cron:
    """Due when the cron *expression* matches *now* (to the minute, or second for 6 fields).

    ``Cron("*/5 * * * *")`` is due at minutes 0, 5, 10 ... of every hour in
    the zone of the *now* it is given, which is the runner's ``timezone``;
    pass *timezone* to evaluate in a fixed zone instead. Needs the ``cron``
    extra (croniter), imported when the first Cron is built.

    Not thread-safe, but safe to share between greenlets and runners: it
    caches the next fire time and recomputes it when *now* moves backwards.

    :param str expression: 5 fields (minute resolution) or 6 (seconds last).
    :param tzinfo timezone: zone to evaluate in; ``None`` uses *now*'s zone.
    :raises InvalidScheduleError: naming the expression when croniter rejects it.
    :raises ImportError: when croniter is not installed.
    """

    __slots__ = ("expression", "timezone", "_croniter", "_iter", "_next", "_last")

    def __init__(self, expression, timezone=None):
        croniter = _croniter()
        if not isinstance(expression, str):
            raise InvalidScheduleError("cron expression must be a str, got %r" % (expression,))
        if timezone is not None and not isinstance(timezone, datetime.tzinfo):
            raise invalid_argument("timezone", timezone, "a datetime.tzinfo or None")
        try:
            croniter(expression, datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidScheduleError("invalid cron expression %r: %s" % (expression, exc)) from exc
        self.expression = expression
        self.timezone = timezone
        self._croniter = croniter
        self._iter = None
        self._next = None
        self._last = None

    def is_run(self, now):
        """Return whether *now* (an aware datetime) is a fire time of the expression."""
        if self.timezone is not None:
            now = now.astimezone(self.timezone)
        if self._iter is None or now < self._last or now.tzinfo != self._last.tzinfo:
            self._reset(now)
        self._last = now
        while self._next < now:
            self._next = self._iter.get_next(datetime.datetime)
            if self._next < now:
                # Far behind (a long gap between calls): restart from now
                # instead of walking every missed fire time.
                self._reset(now)
        return self._next == now

    __call__ = is_run

    def _reset(self, now):
        self._iter = self._croniter(self.expression, now - _ONE_MICROSECOND)
        self._next = self._iter.get_next(datetime.datetime)
        self._last = now

    def __repr__(self):
        return "<greenworks.jobs.Cron %r>" % (self.expression,)


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
