"""
When a job is due: pure schedule strategies, each providing `ISchedule`.

A schedule is a strategy object in the manner of tenacity's: no greenlet, no
clock, no I/O. It answers two questions about times it is *given*:

- ``is_run(now)`` (also ``schedule(now)``): is *now* a fire time?
- ``next_after(dt)``: the first fire time strictly after *dt*, or ``None``
  when there is none any more.

Kinds:

- :class:`Every` -- multiples of a fixed period since the Unix epoch (UTC),
  plus an offset: ``Every(minutes=5)`` at :00, :05, :10 ...
- :class:`Interval` -- every *seconds* counted from a start, up to an end.
- :class:`At` -- one instant.
- :class:`Cron` -- a cron expression, in a zone, with Vixie cron's rules.
- :class:`AnyOf` / :class:`AllOf` -- when any / all of several fire.

All times are aware datetimes; a naive one raises `InvalidArgument`.
``next_after`` returns its answer in the zone of the *dt* it was given.
Bad constructor arguments raise `InvalidScheduleError` (an `InvalidArgument`,
so a ``ValueError``) naming the field.

Cost: ``Every.is_run`` is a few integer operations; ``Cron.is_run`` caches
the next fire time, so between fire times it is a comparison and the cache
is refilled once per fire time (a field walk, tens of microseconds).
Schedules are safe to share between greenlets (nothing in them switches) but
not between threads.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

from zope.interface import implementer

from greenworks import _cron
from greenworks._checks import is_real
from greenworks._checks import seconds as check_seconds
from greenworks.exceptions import InvalidArgument, InvalidScheduleError, invalid_argument
from greenworks.interfaces import ISchedule

__all__ = ["AllOf", "AnyOf", "At", "Cron", "Every", "Interval", "InvalidScheduleError"]

_UTC = datetime.timezone.utc
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=_UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)
_NEVER = datetime.datetime.max.replace(tzinfo=_UTC)
_NO_ZONE = object()
# is_run compares to the nearest millisecond, in exact integer arithmetic.
_MS = datetime.timedelta(milliseconds=1)
_HALF_MS = datetime.timedelta(microseconds=500)
#: How far past *dt* `AllOf.next_after` looks for a common fire time.
ALL_OF_HORIZON = datetime.timedelta(days=_cron.MAX_GAP_DAYS)
#: How many candidate times `AllOf.next_after` tries before it gives up with an error.
ALL_OF_MAX_STEPS = 10000


# -- helpers -------------------------------------------------------------------


def _now(argument: str, value: Any) -> datetime.datetime:
    if not isinstance(value, datetime.datetime) or value.utcoffset() is None:
        raise invalid_argument(argument, value, "an aware datetime")
    return value


def _us(dt: datetime.datetime) -> int:
    """Exact microseconds since the epoch (float timestamps round near whole values)."""
    return (dt - _EPOCH) // _MICROSECOND


def _from_ms(ms: int, tz: datetime.tzinfo | None) -> datetime.datetime:
    return (_EPOCH + datetime.timedelta(milliseconds=ms)).astimezone(tz)


def _field_seconds(owner: str, field: str, value: Any, *, positive: bool = False) -> float:
    """*value* (a number of seconds or a timedelta) as float seconds, or InvalidScheduleError."""
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    try:
        return float(check_seconds(field, value, positive=positive))
    except InvalidArgument as exc:
        raise InvalidScheduleError("%s: %s" % (owner, exc)) from None


def _amount(owner: str, field: str, value: Any) -> float:
    """A count of *field* units (days, hours, minutes): finite, >= 0; a timedelta is taken as is."""
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if not is_real(value) or not math.isfinite(value) or value < 0:
        raise InvalidScheduleError(
            "%s: %s must be a finite number >= 0 or a timedelta, got %r" % (owner, field, value)
        )
    return float(value)


def _whole_ms(owner: str, field: str, total: float) -> int:
    ms = round(total * 1000)
    if ms <= 0 or abs(ms - total * 1000) > 1e-6:
        raise InvalidScheduleError(
            "%s: the %s must be a positive whole number of milliseconds, got %r s" % (owner, field, total)
        )
    return ms


def _moment(owner: str, field: str, value: Any, *, none: bool = False) -> datetime.datetime | None:
    if value is None and none:
        return None
    if not isinstance(value, datetime.datetime) or value.utcoffset() is None:
        raise InvalidScheduleError(
            "%s: %s must be an aware datetime%s, got %r" % (owner, field, " or None" if none else "", value)
        )
    return value


def _duration_text(ms: int) -> str:
    parts = []
    for unit, size in (("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            parts.append("%d%s" % (ms // size, unit))
            ms %= size
    return "".join(parts) or "0s"


def _zone_name(zone: datetime.tzinfo) -> str:
    return str(getattr(zone, "key", None) or zone)


def _describe(schedule: Any) -> str:
    describe = getattr(schedule, "describe", None)
    return describe() if callable(describe) else repr(schedule)


# -- Every ---------------------------------------------------------------------


@implementer(ISchedule)
class Every:
    """Default implementation of `ISchedule`: every multiple of a period since the Unix epoch, plus *offset*.

    ``Every(minutes=5)`` fires at 00:00, 00:05, 00:10 UTC and so on;
    ``Every(hours=1, offset=datetime.timedelta(minutes=30))`` at every half
    past. Periods are aligned on UTC, so ``Every(days=1)`` is midnight UTC;
    use `Cron` for boundaries in a local zone. Times are compared to the
    millisecond, so the tick times a runner passes match exactly.

    :keyword days, hours, minutes, seconds: finite numbers >= 0 (or
        timedeltas), summed into the period.
    :keyword offset: seconds (or a timedelta), any sign; taken modulo the period.
    :raises InvalidScheduleError: naming the field, for NaN, infinity, a
        negative value, a bool or another type, or a period that is not a
        positive whole number of milliseconds.
    """

    __slots__ = ("_period_ms", "_offset_ms", "_fields")

    def __init__(
        self, *, days: Any = 0, hours: Any = 0, minutes: Any = 0, seconds: Any = 0, offset: Any = 0
    ) -> None:
        self._fields: tuple[Any, ...] = (days, hours, minutes, seconds, offset)
        text = repr(self)
        total = (
            _amount(text, "days", days) * 86400
            + _amount(text, "hours", hours) * 3600
            + _amount(text, "minutes", minutes) * 60
            + _amount(text, "seconds", seconds)
        )
        self._period_ms: int = _whole_ms(text, "period", total)
        if isinstance(offset, datetime.timedelta):
            offset = offset.total_seconds()
        if not is_real(offset) or not math.isfinite(offset):
            raise InvalidScheduleError(
                "%s: offset must be a finite number of seconds or a timedelta, got %r" % (text, offset)
            )
        self._offset_ms: int = round(offset * 1000) % self._period_ms

    @property
    def period(self) -> float:
        """The period in seconds (float, read-only)."""
        return self._period_ms / 1000.0

    @property
    def offset(self) -> float:
        """The offset in seconds, in ``[0, period)`` (float, read-only)."""
        return self._offset_ms / 1000.0

    def is_run(self, now: datetime.datetime) -> bool:
        if not isinstance(now, datetime.datetime) or now.tzinfo is None:
            _now("now", now)
        return ((now - _EPOCH + _HALF_MS) // _MS - self._offset_ms) % self._period_ms == 0

    __call__ = is_run

    def next_after(self, dt: datetime.datetime) -> datetime.datetime:
        ms = _us(_now("dt", dt)) // 1000  # fire times are whole ms: "> dt" is "> floor(dt)"
        return _from_ms(self._next_after_ms(ms), dt.tzinfo)

    def _next_after_ms(self, ms: int) -> int:
        """`next_after` on POSIX milliseconds: integer arithmetic, for a runner's hot path."""
        ms += 1
        return ms + (self._offset_ms - ms) % self._period_ms

    def describe(self) -> str:
        text = "every " + _duration_text(self._period_ms)
        if self._offset_ms:
            text += " offset " + _duration_text(self._offset_ms)
        return text

    __str__ = describe

    def __repr__(self) -> str:
        return "Every(days=%r, hours=%r, minutes=%r, seconds=%r, offset=%r)" % self._fields


# -- Interval ------------------------------------------------------------------


@implementer(ISchedule)
class Interval:
    """Default implementation of `ISchedule`: every *seconds* counted from *start*, up to *end*.

    Fire times are ``start + k * seconds`` for ``k = 0, 1, 2 ...`` while they
    are ``<= end``. With ``start=None`` the schedule anchors itself on the
    first datetime it is asked about, by `is_run` or `next_after`: *start*
    becomes that time (to the millisecond) plus *seconds*, so the first fire
    time is one interval after the job was first considered, as with
    APScheduler's ``IntervalTrigger`` and Go's ``time.Ticker``. An anchored
    schedule keeps its anchor; give each job its own Interval.

    :param seconds: the interval: a number of seconds > 0 or a timedelta, a
        whole number of milliseconds.
    :keyword datetime start: the first fire time (aware), or None (see above).
    :keyword datetime end: the last possible fire time (aware, inclusive), or None.
    :raises InvalidScheduleError: naming the field.
    """

    __slots__ = ("_period_ms", "_start_ms", "_end_ms", "_seconds", "_start", "_end")

    def __init__(
        self, seconds: Any, *, start: datetime.datetime | None = None, end: datetime.datetime | None = None
    ) -> None:
        text = "Interval(%r)" % (seconds,)
        self._period_ms: int = _whole_ms(
            text, "interval", _field_seconds(text, "seconds", seconds, positive=True)
        )
        self._seconds: Any = seconds
        self._start: datetime.datetime | None = _moment(text, "start", start, none=True)
        self._end: datetime.datetime | None = _moment(text, "end", end, none=True)
        self._start_ms: int | None = None if start is None else round(_us(start) / 1000)
        self._end_ms: int | None = None if end is None else _us(end) // 1000
        if self._start_ms is not None and self._end_ms is not None and self._end_ms < self._start_ms:
            raise InvalidScheduleError("%s: end %s is before start %s" % (text, end, start))

    @property
    def period(self) -> float:
        """The interval in seconds (float, read-only)."""
        return self._period_ms / 1000.0

    @property
    def start(self) -> datetime.datetime | None:
        """The first fire time (aware), or None while a ``start=None`` schedule is not anchored yet."""
        if self._start is None and self._start_ms is not None:
            self._start = _from_ms(self._start_ms, _UTC)
        return self._start

    @property
    def end(self) -> datetime.datetime | None:
        """The last possible fire time, or None (read-only)."""
        return self._end

    def _anchor(self, ms: int) -> int:
        if self._start_ms is None:
            self._start_ms = ms + self._period_ms
        return self._start_ms

    def is_run(self, now: datetime.datetime) -> bool:
        if not isinstance(now, datetime.datetime) or now.tzinfo is None:
            _now("now", now)
        ms = (now - _EPOCH + _HALF_MS) // _MS
        start = self._start_ms if self._start_ms is not None else self._anchor(ms)
        return (
            ms >= start
            and (ms - start) % self._period_ms == 0
            and (self._end_ms is None or ms <= self._end_ms)
        )

    __call__ = is_run

    def next_after(self, dt: datetime.datetime) -> datetime.datetime | None:
        us = _us(_now("dt", dt))
        self._anchor((us + 500) // 1000)
        fire = self._next_after_ms(us // 1000)
        return None if fire is None else _from_ms(fire, dt.tzinfo)

    def _next_after_ms(self, ms: int) -> int | None:
        """`next_after` on POSIX milliseconds (once anchored): integer arithmetic, for a runner's hot path."""
        start = self._anchor(ms)
        fire = start if ms < start else start + ((ms - start) // self._period_ms + 1) * self._period_ms
        if self._end_ms is not None and fire > self._end_ms:
            return None
        return fire

    def describe(self) -> str:
        text = "interval " + _duration_text(self._period_ms)
        if self.start is not None:
            text += " from " + self.start.isoformat()
        if self._end is not None:
            text += " until " + self._end.isoformat()
        return text

    __str__ = describe

    def __repr__(self) -> str:
        return "Interval(%r, start=%r, end=%r)" % (self._seconds, self._start, self._end)


# -- At ------------------------------------------------------------------------


@implementer(ISchedule)
class At:
    """Default implementation of `ISchedule`: once, at *when* (to the millisecond).

    :param datetime when: the fire time, aware.
    :raises InvalidScheduleError: *when* is not an aware datetime.
    """

    __slots__ = ("_when", "_ms")

    def __init__(self, when: datetime.datetime) -> None:
        _moment("At", "when", when)
        self._when: datetime.datetime = when
        self._ms: int = round(_us(when) / 1000)

    @property
    def when(self) -> datetime.datetime:
        """The fire time, as given (read-only)."""
        return self._when

    def is_run(self, now: datetime.datetime) -> bool:
        if not isinstance(now, datetime.datetime) or now.tzinfo is None:
            _now("now", now)
        return (now - _EPOCH + _HALF_MS) // _MS == self._ms

    __call__ = is_run

    def next_after(self, dt: datetime.datetime) -> datetime.datetime | None:
        if self._ms * 1000 > _us(_now("dt", dt)):
            return _from_ms(self._ms, dt.tzinfo)
        return None

    def describe(self) -> str:
        return "at " + self._when.isoformat()

    __str__ = describe

    def __repr__(self) -> str:
        return "At(%r)" % (self._when,)


# -- Cron ----------------------------------------------------------------------


@implementer(ISchedule)
class Cron:
    """Default implementation of `ISchedule`: when a cron expression matches, to the second.

    Evaluated in *timezone*, or in the zone of the time it is asked about
    (the runner's ``timezone``) when that is None. Our own implementation;
    nothing to install.

    The expression:

    - 5 fields ``minute hour day-of-month month day-of-week`` (fires on
      second 0), or 6 with ``second`` **last** (croniter's order), or one of
      ``@yearly @annually @monthly @weekly @daily @midnight @hourly``.
    - Each field is a list (``1,15``) of values, ranges (``1-5``), ``*``, and
      steps (``*/15``, ``0-30/10``, ``5/15`` meaning ``5-59/15``). Months take
      ``JAN``-``DEC``, weekdays ``SUN``-``SAT`` (case-insensitive); weekday 0
      and 7 are Sunday. ``?`` is ``*`` in the two day fields.
    - Day of month: ``L`` is the month's last day. Day of week: ``FRI#2`` is
      the second Friday, ``5L`` (or croniter's ``L5``) the last Friday.
    - Day of month and day of week: as in Vixie cron, when *both* are
      restricted (neither starts with ``*`` or ``?``) a day matches when
      *either* does, otherwise when both do. So ``0 0 13 * FRI`` fires on
      every 13th and every Friday, while ``0 0 */2 * FRI`` fires on Fridays
      with an odd day number (croniter reads the latter as OR).

    Daylight-saving time, in a zone that has it (Vixie cron's rules): an
    expression whose minute or hour field starts with ``*`` is a *wildcard*
    one and fires at every real instant whose local wall time matches: in
    the autumn hour that repeats, ``"*/15 * * * *"`` fires at 02:00, 02:15 ...
    of both occurrences (every 15 real minutes), and nothing fires for the
    wall times the spring jump skips. Any other expression is a *fixed-time*
    one and fires once per matching wall time: a repeated one at its first
    occurrence only, a skipped one at the jump itself (the first valid
    instant after it: 03:00 CEST for ``"30 2 * * *"`` in Berlin on the last
    Sunday of March, 03:00 EDT in New York).

    Refused at construction, with `InvalidScheduleError`: a malformed
    expression (the message names the field), and one that fires less than
    once in every 4 years (``0 0 31 2 *`` never; ``0 0 * 2 MON#5`` every 28
    years). ``0 0 29 2 *`` is accepted.

    :param str expression: the cron expression.
    :param tzinfo timezone: the zone to evaluate in (``zoneinfo.ZoneInfo`` or
        ``datetime.timezone``; others must follow PEP 495's ``fold``), or None.
    :raises InvalidScheduleError: for a bad or never-firing expression.
    :raises InvalidArgument: *timezone* is not a tzinfo.
    """

    __slots__ = ("_expression", "_timezone", "_spec", "_zone", "_low", "_next")

    def __init__(self, expression: str, timezone: datetime.tzinfo | None = None) -> None:
        if not isinstance(expression, str):
            raise InvalidScheduleError("cron expression must be a str, got %r" % (expression,))
        if timezone is not None and not isinstance(timezone, datetime.tzinfo):
            raise invalid_argument("timezone", timezone, "a datetime.tzinfo or None")
        self._spec: _cron.Spec = _cron.parse(expression)
        self._expression: str = expression
        self._timezone: datetime.tzinfo | None = timezone
        # The is_run cache: no fire time in [_low, _next), and _next is one
        # (_NEVER: none), for the zone _zone; replaced whole, never in part.
        # Aware UTC datetimes: comparing them with a UTC *now* is a plain
        # field comparison, much cheaper than now.timestamp().
        self._zone: object = _NO_ZONE
        self._low: datetime.datetime = _NEVER
        self._next: datetime.datetime = _NEVER

    @property
    def expression(self) -> str:
        """The expression, as given (read-only)."""
        return self._expression

    @property
    def timezone(self) -> datetime.tzinfo | None:
        """The zone it is evaluated in, or None for the zone of the time asked about (read-only)."""
        return self._timezone

    @property
    def wildcard(self) -> bool:
        """Whether the minute or hour field starts with ``*`` (the daylight-saving rule it follows)."""
        return self._spec.wildcard

    def is_run(self, now: datetime.datetime) -> bool:
        # The hot path (a UTC *now* between two fire times): three comparisons.
        tz = getattr(now, "tzinfo", None)
        if tz is _UTC and (self._timezone or tz) is self._zone and self._low <= now <= self._next:
            return now == self._next
        return self._is_run(now)

    __call__ = is_run

    def _is_run(self, now: datetime.datetime) -> bool:
        if not isinstance(now, datetime.datetime) or now.tzinfo is None:
            _now("now", now)
        zone = self._timezone or now.tzinfo
        if now.tzinfo is not _UTC:
            # Also needed for ==: PEP 495 makes a repeated wall time unequal
            # to every datetime of another zone.
            now = now.astimezone(_UTC)
        if (zone is not self._zone and zone != self._zone) or not self._low <= now <= self._next:
            # Not None: now is aware (checked above) when the schedule has no zone of its own.
            found = _cron.next_instant(self._spec, zone, math.ceil(now.timestamp()) - 1)  # type: ignore[arg-type]
            following = _NEVER if found is None else datetime.datetime.fromtimestamp(found, _UTC)
            self._zone, self._low, self._next = zone, now, following
        return now == self._next

    def next_after(self, dt: datetime.datetime) -> datetime.datetime | None:
        zone = self._timezone or _now("dt", dt).tzinfo
        # Not None: _now refuses a naive dt.
        found = _cron.next_instant(self._spec, zone, _us(dt) // 1000000)  # type: ignore[arg-type]
        return None if found is None else datetime.datetime.fromtimestamp(found, dt.tzinfo)

    def describe(self) -> str:
        text = "cron %r" % (self._expression,)
        if self._timezone is not None:
            text += " " + _zone_name(self._timezone)
        return text

    __str__ = describe

    def __repr__(self) -> str:
        if self._timezone is None:
            return "Cron(%r)" % (self._expression,)
        return "Cron(%r, timezone=%r)" % (self._expression, self._timezone)


# -- combinations --------------------------------------------------------------


def _children(owner: str, schedules: tuple[Any, ...]) -> tuple[Any, ...]:
    if not schedules:
        raise InvalidScheduleError("%s needs at least one schedule" % owner)
    for index, schedule in enumerate(schedules):
        if not (
            callable(getattr(schedule, "is_run", None)) and callable(getattr(schedule, "next_after", None))
        ):
            raise invalid_argument(
                "%s schedules[%d]" % (owner, index),
                schedule,
                "a schedule with is_run(now) and next_after(dt)",
            )
    return schedules


@implementer(ISchedule)
class AnyOf:
    """Default implementation of `ISchedule`: fires whenever any of *schedules* fires.

    :raises InvalidScheduleError: no schedule given.
    :raises InvalidArgument: an argument is not a schedule (``is_run`` and ``next_after``).
    """

    __slots__ = ("schedules",)

    def __init__(self, *schedules: Any) -> None:
        self.schedules: tuple[Any, ...] = _children("AnyOf", schedules)

    def is_run(self, now: datetime.datetime) -> bool:
        return any(schedule.is_run(now) for schedule in self.schedules)

    __call__ = is_run

    def next_after(self, dt: datetime.datetime) -> datetime.datetime | None:
        _now("dt", dt)
        found = [t for t in (s.next_after(dt) for s in self.schedules) if t is not None]
        return min(found, key=_us).astimezone(dt.tzinfo) if found else None

    def describe(self) -> str:
        return "any of (%s)" % ", ".join(_describe(s) for s in self.schedules)

    __str__ = describe

    def __repr__(self) -> str:
        return "AnyOf(%s)" % ", ".join(repr(s) for s in self.schedules)


@implementer(ISchedule)
class AllOf:
    """Default implementation of `ISchedule`: fires when all of *schedules* fire at the same time.

    ``AllOf(Cron("0 9 * * *"), Every(hours=2))`` fires at 09:00 only on days
    when 09:00 is also on the 2-hour grid. `next_after` leapfrogs: it asks
    each schedule for its first fire time at or after the latest candidate
    until they agree, looking at most `ALL_OF_HORIZON` (4 years) past *dt*
    (then it returns None) and trying at most `ALL_OF_MAX_STEPS` candidates.

    :raises InvalidScheduleError: no schedule given; from `next_after`, when
        `ALL_OF_MAX_STEPS` candidates passed without agreement (schedules
        that never coincide, such as two Every grids offset by half a period).
    :raises InvalidArgument: an argument is not a schedule.
    """

    __slots__ = ("schedules",)

    def __init__(self, *schedules: Any) -> None:
        self.schedules: tuple[Any, ...] = _children("AllOf", schedules)

    def is_run(self, now: datetime.datetime) -> bool:
        return all(schedule.is_run(now) for schedule in self.schedules)

    __call__ = is_run

    def next_after(self, dt: datetime.datetime) -> datetime.datetime | None:
        limit = _us(_now("dt", dt)) + _us(_EPOCH + ALL_OF_HORIZON)
        found = [s.next_after(dt) for s in self.schedules]
        for _ in range(ALL_OF_MAX_STEPS):
            if any(t is None for t in found):
                return None
            stamps = [_us(t) for t in found]
            latest = max(stamps)
            if latest > limit:
                return None
            if min(stamps) == latest:
                first: datetime.datetime = found[0]
                return first.astimezone(dt.tzinfo)
            candidate = found[stamps.index(latest)]
            found = [
                t if stamp == latest else (candidate if s.is_run(candidate) else s.next_after(candidate))
                for s, t, stamp in zip(self.schedules, found, stamps, strict=True)
            ]
        raise InvalidScheduleError(
            "%s: no common fire time found in %d candidates after %s; do these schedules ever coincide?"
            % (self.describe(), ALL_OF_MAX_STEPS, dt.isoformat())
        )

    def describe(self) -> str:
        return "all of (%s)" % ", ".join(_describe(s) for s in self.schedules)

    __str__ = describe

    def __repr__(self) -> str:
        return "AllOf(%s)" % ", ".join(repr(s) for s in self.schedules)
