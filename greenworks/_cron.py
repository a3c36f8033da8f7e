"""
The cron engine behind `greenworks.schedules.Cron`: parse an expression, then
find fire times by walking its fields, in wall time and then in real time.

Three layers, each pure:

- :func:`parse` turns the text into a :class:`Spec` (sorted tuples of the
  allowed values per field, plus the ``L``/``#`` day rules and the Vixie
  flags), or raises `InvalidScheduleError` naming the field.
- :meth:`Spec.next_wall` finds the first matching *wall time* (a naive
  datetime) at or after a given one by walking the fields from month down to
  second: a year of an hourly job costs a handful of steps, never a scan.
- :func:`next_instant` maps wall times to instants in a zone, with the
  Vixie-cron rules for daylight-saving transitions (see `Cron`).

Nothing here reads the clock. Instants are integer seconds since the epoch.
"""

from __future__ import annotations

import bisect
import datetime
import itertools
import re

from greenworks.exceptions import InvalidScheduleError

__all__ = ["Spec", "next_instant", "parse"]

_UTC = datetime.timezone.utc
_EPOCH = datetime.datetime(1970, 1, 1)
_ONE_SECOND = datetime.timedelta(seconds=1)
_DAY = 86400
#: How far ahead (in years) a wall-time search goes before it says "none".
#: Nine covers the longest gap an accepted expression can have: Feb 29 from
#: 2096 to 2104 (1900, 2100, 2200 are not leap years).
HORIZON_YEARS = 9
#: The longest gap (days) allowed between two fire dates: 4 years and a leap day.
MAX_GAP_DAYS = 4 * 365 + 1

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Spelled out, not calendar.month_abbr: that one follows the process locale.
_MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    )
}
_WEEKDAYS = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}

# (name, low, high, names) per position of a 6-field expression; the 5-field
# form is the same without the trailing seconds (croniter's order).
_FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day-of-month", 1, 31, None),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _WEEKDAYS),
    ("second", 0, 59, None),
)
_TERM = re.compile(r"^(?:(\*)|([0-9A-Za-z]+)(?:-([0-9A-Za-z]+))?)(?:/([0-9]+))?$")
_NTH = re.compile(r"^([0-9A-Za-z]+)#([0-9]+)$")
_LAST_WEEKDAY = re.compile(r"^(?:L([0-9A-Za-z]+)|([0-9A-Za-z]+)L)$")


class _FieldError(Exception):
    """A problem in one field; :func:`parse` adds the expression and the field name."""


class Spec:
    """A parsed cron expression: the allowed values of each field and the day rules.

    :ivar tuple seconds, minutes, hours, months: sorted allowed values.
    :ivar frozenset days: allowed days of the month (1-31).
    :ivar bool last_day: ``L`` in day-of-month (the month's last day).
    :ivar frozenset weekdays: allowed weekdays, 0 = Sunday.
    :ivar dict nth: weekday -> the set of n for ``wd#n`` (n in 1-5; -1 for "last").
    :ivar bool dom_star, dow_star: the field starts with ``*`` or ``?``
        (Vixie's DOM_STAR/DOW_STAR): with both fields restricted a day matches
        when *either* does, otherwise when both do.
    :ivar bool wildcard: the minute or the hour field starts with ``*`` (Vixie's
        MIN_STAR/HR_STAR): decides the daylight-saving rule.
    """

    __slots__ = (
        "seconds",
        "minutes",
        "hours",
        "days",
        "last_day",
        "months",
        "weekdays",
        "nth",
        "dom_star",
        "dow_star",
        "wildcard",
        "every_day",
    )

    def __init__(self, fields: list[str]) -> None:
        values: list[set[int]] = []
        self.last_day = False
        self.nth: dict[int, set[int]] = {}
        for index, text in enumerate(fields):
            name, low, high, names = _FIELDS[index]
            try:
                values.append(self._field(index, text, low, high, names))
            except _FieldError as exc:
                raise _FieldError("%s field %r: %s" % (name, text, exc)) from None
        if len(fields) == 5:
            values.append({0})
        minutes, hours, days, months, weekdays, seconds = values
        self.seconds = tuple(sorted(seconds))
        self.minutes = tuple(sorted(minutes))
        self.hours = tuple(sorted(hours))
        self.days = frozenset(days)
        self.months = tuple(sorted(months))
        self.weekdays = frozenset(d % 7 for d in weekdays)
        self.dom_star = fields[2][:1] in ("*", "?")
        self.dow_star = fields[4][:1] in ("*", "?")
        self.wildcard = fields[0][:1] == "*" or fields[1][:1] == "*"
        # The common case, checked once: no day rule at all.
        self.every_day = (
            len(self.days) == 31
            and len(self.weekdays) == 7
            and not self.nth
            and (self.dom_star or self.dow_star)
        )

    def _field(self, index: int, text: str, low: int, high: int, names: dict[str, int] | None) -> set[int]:
        if text == "?":
            if index not in (2, 4):
                raise _FieldError("'?' is only allowed in day-of-month and day-of-week")
            text = "*"
        result: set[int] = set()
        for term in text.split(","):
            if not term:
                raise _FieldError("empty list item")
            upper = term.upper()
            if index == 2 and upper == "L":
                self.last_day = True
                continue
            if index == 4 and ("#" in term or (upper.endswith("L") or upper.startswith("L"))):
                self._weekday_rule(upper, names)
                continue
            result |= _term(upper, low, high, names)
        return result

    def _weekday_rule(self, term: str, names: dict[str, int] | None) -> None:
        nth = _NTH.match(term)
        if nth:
            day = _value(nth.group(1), 0, 7, names)
            n = int(nth.group(2))
            if not 1 <= n <= 5:
                raise _FieldError("%r: the n of 'weekday#n' must be 1 to 5" % term)
        else:
            last = _LAST_WEEKDAY.match(term)
            if not last:
                raise _FieldError("%r is not a weekday, 'weekday#n' or 'weekdayL'" % term)
            day = _value(last.group(1) or last.group(2), 0, 7, names)
            n = -1
        self.nth.setdefault(day % 7, set()).add(n)

    # -- matching ------------------------------------------------------------

    def day_matches(self, year: int, month: int, day: int) -> bool:
        """Whether the date matches day-of-month and day-of-week (Vixie's OR/AND rule)."""
        if self.every_day:
            return True
        month_days = _month_days(year, month)
        dom = day in self.days or (self.last_day and day == month_days)
        weekday = (datetime.date(year, month, day).weekday() + 1) % 7
        dow = weekday in self.weekdays
        if not dow and weekday in self.nth:
            ns = self.nth[weekday]
            dow = (day - 1) // 7 + 1 in ns or (-1 in ns and day + 7 > month_days)
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def wall_matches(self, wall: datetime.datetime) -> bool:
        """Whether the naive *wall* time (whole seconds) matches every field."""
        return (
            wall.microsecond == 0
            and wall.second in self.seconds
            and wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and self.day_matches(wall.year, wall.month, wall.day)
        )

    def next_wall(self, start: datetime.datetime) -> datetime.datetime | None:
        """Return the first matching naive wall time ``>= start``, or None within `HORIZON_YEARS`.

        Walks fields from the month down: each step either lands on an
        allowed value or carries into the next larger field and resets the
        smaller ones to their first allowed value.
        """
        if start.microsecond:
            start = start.replace(microsecond=0) + _ONE_SECOND
        year, month, day = start.year, start.month, start.day
        hour, minute, second = start.hour, start.minute, start.second
        limit = year + HORIZON_YEARS
        months, hours, minutes, seconds = self.months, self.hours, self.minutes, self.seconds
        matched = None  # the (year, month, day) last found to match: carries rarely change it
        while year <= limit:
            i = bisect.bisect_left(months, month)
            if i == len(months):
                year, month, day, hour, minute, second = year + 1, months[0], 1, 0, 0, 0
                continue
            if months[i] != month:
                month, day, hour, minute, second = months[i], 1, 0, 0, 0
            month_days = _month_days(year, month)
            if matched != (year, month, day):
                while day <= month_days and not self.day_matches(year, month, day):
                    day, hour, minute, second = day + 1, 0, 0, 0
                if day > month_days:
                    month, day, hour, minute, second = month + 1, 1, 0, 0, 0
                    if month > 12:
                        year, month = year + 1, 1
                    continue
                matched = (year, month, day)
            i = bisect.bisect_left(hours, hour)
            if i == len(hours):
                day, hour, minute, second = day + 1, 0, 0, 0
                if day > month_days:
                    month, day = month + 1, 1
                    if month > 12:
                        year, month = year + 1, 1
                continue
            if hours[i] != hour:
                hour, minute, second = hours[i], 0, 0
            i = bisect.bisect_left(minutes, minute)
            if i == len(minutes):
                hour, minute, second = hour + 1, 0, 0
                continue
            if minutes[i] != minute:
                minute, second = minutes[i], 0
            i = bisect.bisect_left(seconds, second)
            if i == len(seconds):
                minute, second = minute + 1, 0
                continue
            if year > datetime.MAXYEAR:
                return None
            return datetime.datetime(year, month, day, hour, minute, seconds[i])
        return None

    # -- the construction check ----------------------------------------------

    def _first_date(self, year: int) -> datetime.date | None:
        for month in self.months:
            for day in range(1, _month_days(year, month) + 1):
                if self.day_matches(year, month, day):
                    return datetime.date(year, month, day)
        return None

    def _last_date(self, year: int) -> datetime.date | None:
        for month in reversed(self.months):
            for day in range(_month_days(year, month), 0, -1):
                if self.day_matches(year, month, day):
                    return datetime.date(year, month, day)
        return None

    def check_frequency(self) -> str | None:
        """Return why the expression is refused (never fires, or not once in 4 years), else None.

        The calendar repeats every 28 years between 1901 and 2099 (7 leap
        years, each starting on a different weekday), so the years 2000-2027
        hold every possible year layout: the expression fires at all exactly
        when it fires there, and its longest gap between fire dates is found
        by walking those years twice round.
        """
        cycle = range(2000, 2028)
        fires = {year: self._first_date(year) is not None for year in cycle}
        if not any(fires.values()):
            return "it never fires (no date matches its day, month and weekday fields)"
        years = [y for y in range(2000, 2056) if fires[2000 + (y - 2000) % 28]]
        for before, after in itertools.pairwise(years):
            if after - before < 4:
                continue  # the gap is under 4 years whatever the dates
            last, first = self._last_date(before), self._first_date(after)
            assert last is not None and first is not None
            if (first - last).days > MAX_GAP_DAYS:
                return "it fires less than once every 4 years (%s, then %s)" % (last, first)
        return None


_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _month_days(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _MONTH_DAYS[month]


def _value(text: str, low: int, high: int, names: dict[str, int] | None) -> int:
    if text.isdigit():
        value = int(text)
    elif names is not None and text in names:
        value = names[text]
    else:
        raise _FieldError("%r is not a number%s" % (text, " or a name" if names else ""))
    if not low <= value <= high:
        raise _FieldError("%d is out of range %d-%d" % (value, low, high))
    return value


def _term(term: str, low: int, high: int, names: dict[str, int] | None) -> set[int]:
    match = _TERM.match(term)
    if not match:
        raise _FieldError("%r is not a value, range or step" % term)
    star, first, last, step_text = match.groups()
    if star:
        start, stop = low, high
    else:
        start = _value(first, low, high, names)
        if last is not None:
            stop = _value(last, low, high, names)
            if stop < start:
                raise _FieldError("the range %r goes backwards" % term)
        else:
            # "5/15" is "5-max/15" (croniter, APScheduler); "5" alone is just 5.
            stop = high if step_text is not None else start
    step = 1
    if step_text is not None:
        step = int(step_text)
        if step < 1:
            raise _FieldError("the step of %r must be at least 1" % term)
    return set(range(start, stop + 1, step))


def parse(expression: str) -> Spec:
    """Return the `Spec` of *expression*, or raise `InvalidScheduleError` naming what is wrong."""
    text = _ALIASES.get(expression.strip().lower(), expression)
    fields = text.split()
    if len(fields) not in (5, 6):
        raise InvalidScheduleError(
            "invalid cron expression %r: it needs 5 fields (minute hour day-of-month month day-of-week)"
            " or 6 (the same, then second), or an alias such as @daily; got %d" % (expression, len(fields))
        )
    try:
        spec = Spec(fields)
    except _FieldError as exc:
        raise InvalidScheduleError("invalid cron expression %r: %s" % (expression, exc)) from None
    problem = spec.check_frequency()
    if problem:
        raise InvalidScheduleError("cron expression %r is refused: %s" % (expression, problem))
    return spec


# -- wall time to real time ----------------------------------------------------


def _wall(instant: int, offset: int) -> datetime.datetime:
    return _EPOCH + datetime.timedelta(seconds=instant + offset)


def _epoch(wall: datetime.datetime) -> int:
    return (wall - _EPOCH) // _ONE_SECOND


def _offset(zone: datetime.tzinfo, instant: int) -> int:
    local = datetime.datetime.fromtimestamp(instant, zone)
    # Aware (made with a tzinfo), so utcoffset() is not None.
    return int(local.utcoffset().total_seconds())  # type: ignore[union-attr]


def _transition(zone: datetime.tzinfo, low: int, high: int) -> int:
    """The first instant in ``(low, high]`` with the offset of *high*; the offsets at the ends differ."""
    target = _offset(zone, high)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(zone, middle) == target:
            high = middle
        else:
            low = middle
    return high


def next_instant(spec: Spec, zone: datetime.tzinfo, after: int) -> int | None:
    """Return the first fire instant (epoch seconds) strictly after *after*, or None.

    Wall times are those of *zone*. Around a daylight-saving transition:

    - a wildcard spec (minute or hour starts with ``*``) fires at every
      instant whose wall time matches: both occurrences of a repeated wall
      time, none of the wall times the clock skips;
    - a fixed-time spec fires once per matching wall time: at its first
      occurrence when it is repeated, and at the instant of the jump (the
      first valid instant after it) when the clock skips it.
    """
    try:
        if isinstance(zone, datetime.timezone):
            offset = int(zone.utcoffset(None).total_seconds())
            wall = spec.next_wall(_wall(after, offset) + _ONE_SECOND)
            return None if wall is None else _epoch(wall) - offset
        offset = _offset(zone, after)
        if _offset(zone, after + _DAY) < offset:
            # The clock goes back within a day: wall times just after *after*
            # come round again. Search up to the jump, then from it.
            jump = _transition(zone, after, after + _DAY)
            found = _search(spec, zone, _wall(after, offset) + _ONE_SECOND, after, jump)
            if found is not None:
                return found
            return _search(spec, zone, _wall(jump, _offset(zone, jump)), jump - 1, None)
        return _search(spec, zone, _wall(after, offset) + _ONE_SECOND, after, None)
    except (OverflowError, ValueError, OSError):
        return None  # past datetime.MAXYEAR: no more fire times


def _search(
    spec: Spec, zone: datetime.tzinfo, start: datetime.datetime, after: int, before: int | None
) -> int | None:
    """The first fire instant in ``(after, before)`` among wall times ``>= start`` (see `next_instant`)."""
    last_wall = None if before is None else _wall(before - 1, _offset(zone, before - 1))
    wall = start
    while True:
        found = spec.next_wall(wall)
        if found is None or (last_wall is not None and found > last_wall):
            return None
        wall = found
        early = int(wall.replace(tzinfo=zone, fold=0).timestamp())
        late = int(wall.replace(tzinfo=zone, fold=1).timestamp())
        if early == late:
            candidates = [early]
        elif early < late:
            # Repeated wall time: fold=0 is the first occurrence.
            candidates = [early, late] if spec.wildcard else [early]
            if late <= after or (not spec.wildcard and early <= after):
                # Every wall time of this repeated stretch is already behind us:
                # jump to the wall time right after the stretch.
                jump = _transition(zone, early, late)
                wall = _wall(jump - 1, _offset(zone, jump - 1)) + _ONE_SECOND
                continue
        else:
            # Skipped wall time (fold=0 reads it with the offset before the jump).
            jump = _transition(zone, late, early)
            if spec.wildcard:
                wall = _wall(jump, _offset(zone, jump))
                continue
            candidates = [jump]
        for instant in candidates:
            if instant > after and (before is None or instant < before):
                return instant
        wall += _ONE_SECOND
