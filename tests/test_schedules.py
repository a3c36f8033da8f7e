"""Tests for greenworks.schedules: Every, Interval, At, Cron (our own), AnyOf, AllOf.

croniter is only the oracle here: the comparison runs in UTC, on expressions
whose meaning croniter and Vixie cron agree on. Daylight-saving behaviour is
checked against a brute-force reading of the rules, minute by minute.
"""

import datetime
import itertools
import math
import re
import sys
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given
from hypothesis import strategies as st
from zope.interface.verify import verifyClass, verifyObject

import greenworks
import greenworks.jobs
from greenworks import _cron, schedules
from greenworks.exceptions import InvalidArgument, InvalidScheduleError
from greenworks.interfaces import ISchedule
from greenworks.schedules import AllOf, AnyOf, At, Cron, Every, Interval

UTC = datetime.timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
T0 = datetime.datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = datetime.timedelta(minutes=1)
SECOND = datetime.timedelta(seconds=1)


def utc(*args):
    return datetime.datetime(*args, tzinfo=UTC)


def chain(schedule, start, end):
    """Every fire time in (start, end), found by following next_after, as UTC datetimes."""
    found = []
    t = start
    while True:
        t = schedule.next_after(t)
        if t is None or t >= end:
            return found
        found.append(t.astimezone(UTC))


def local(times, zone):
    return [t.astimezone(zone).strftime("%H:%M%z") for t in times]


class TestInterfaces:
    @pytest.mark.parametrize("cls", [Every, Interval, At, Cron, AnyOf, AllOf])
    def test_every_schedule_implements_ischedule(self, cls):
        """Each schedule class implements ISchedule, and its instances provide it."""
        assert verifyClass(ISchedule, cls)
        examples = {
            Every: Every(minutes=5),
            Interval: Interval(60),
            At: At(T0),
            Cron: Cron("0 8 * * *"),
            AnyOf: AnyOf(Every(minutes=5)),
            AllOf: AllOf(Every(minutes=5)),
        }
        assert verifyObject(ISchedule, examples[cls])

    def test_old_import_paths_are_the_same_classes(self):
        """greenworks and greenworks.jobs still export Every and Cron, now from greenworks.schedules."""
        assert greenworks.Every is Every is greenworks.jobs.Every
        assert greenworks.Cron is Cron is greenworks.jobs.Cron

    def test_cron_needs_no_croniter(self, monkeypatch):
        """Cron parses and fires with croniter hidden: it is no longer a run-time dependency."""
        monkeypatch.setitem(sys.modules, "croniter", None)
        assert Cron("*/5 * * * *").next_after(T0) == utc(2026, 1, 1, 0, 5)

    @pytest.mark.parametrize(
        "schedule", [Every(minutes=1), Interval(60, start=T0), At(T0), Cron("* * * * *"), AnyOf(At(T0))]
    )
    @pytest.mark.parametrize("bad", [datetime.datetime(2026, 1, 1), "2026-01-01", 0, None])
    def test_naive_or_non_datetime_is_refused(self, schedule, bad):
        """is_run and next_after refuse a naive datetime or a non-datetime with InvalidArgument."""
        with pytest.raises(InvalidArgument, match="an aware datetime"):
            schedule.is_run(bad)
        with pytest.raises(InvalidArgument, match=r"^dt must be an aware datetime"):
            schedule.next_after(bad)


class TestEvery:
    def test_epoch_aligned_with_offset(self):
        """Every fires on multiples of its period since the epoch, shifted by offset."""
        five = Every(minutes=5)
        assert [five(T0 + n * MINUTE) for n in range(6)] == [True, False, False, False, False, True]
        half_past = Every(hours=1, offset=datetime.timedelta(minutes=30))
        assert half_past.is_run(utc(2026, 1, 1, 3, 30)) and not half_past.is_run(utc(2026, 1, 1, 3))

    def test_period_and_offset_in_seconds(self):
        """period and offset are exposed in seconds, the offset taken modulo the period."""
        schedule = Every(minutes=5, offset=-60)
        assert (schedule.period, schedule.offset) == (300.0, 240.0)
        assert Every(days=1, hours=1, minutes=1, seconds=1.5).period == 90061.5

    def test_repr_shows_every_field(self):
        """repr names every field, the offset included, as given."""
        assert repr(Every(minutes=5, offset=90)) == "Every(days=0, hours=0, minutes=5, seconds=0, offset=90)"

    def test_describe(self):
        """describe() and str() give a short text with units and the offset."""
        assert Every(minutes=5).describe() == "every 5m"
        assert str(Every(hours=1, minutes=30, offset=15)) == "every 1h30m offset 15s"
        assert Every(seconds=0.25).describe() == "every 250ms"

    @pytest.mark.parametrize("field", ["days", "hours", "minutes", "seconds", "offset"])
    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, "5", None, [1]])
    def test_bad_field_is_refused_naming_it(self, field, value):
        """NaN, infinities, bools and other types raise InvalidScheduleError naming the field and value."""
        kwargs = {"minutes": 5, field: value}
        pattern = "%s must be .*, got %s" % (field, re.escape(repr(value)))
        with pytest.raises(InvalidScheduleError, match=pattern) as info:
            Every(**kwargs)
        assert isinstance(info.value, InvalidArgument)

    @pytest.mark.parametrize("kwargs", [{"minutes": -1}, {}, {"seconds": 0.0001}])
    def test_bad_period_is_refused(self, kwargs):
        """A negative field, a zero period or one that is not whole milliseconds is refused."""
        with pytest.raises(InvalidScheduleError):
            Every(**kwargs)

    def test_next_after(self):
        """next_after is the first multiple strictly after dt, in dt's zone."""
        five = Every(minutes=5, offset=60)
        assert five.next_after(T0) == utc(2026, 1, 1, 0, 1)
        assert five.next_after(utc(2026, 1, 1, 0, 1)) == utc(2026, 1, 1, 0, 6)
        assert five.next_after(utc(2026, 1, 1, 0, 0, 59, 999999)) == utc(2026, 1, 1, 0, 1)
        answer = five.next_after(T0.astimezone(BERLIN))
        assert answer.tzinfo is BERLIN and answer == utc(2026, 1, 1, 0, 1)


class TestInterval:
    def test_counted_from_start_up_to_end(self):
        """Interval fires at start, start + k*seconds, up to and including end."""
        start = utc(2026, 1, 1, 0, 0, 7)
        schedule = Interval(90, start=start, end=start + datetime.timedelta(seconds=270))
        fires = chain(schedule, start - SECOND, start + datetime.timedelta(hours=1))
        assert fires == [start + datetime.timedelta(seconds=s) for s in (0, 90, 180, 270)]
        assert all(schedule.is_run(t) for t in fires)
        assert not schedule.is_run(start + datetime.timedelta(seconds=360))
        assert not schedule.is_run(start - datetime.timedelta(seconds=90))
        assert schedule.next_after(start + datetime.timedelta(seconds=270)) is None

    def test_start_none_anchors_on_the_first_question(self):
        """With start=None the first time asked becomes the anchor: the first fire is one interval later."""
        schedule = Interval(60)
        assert schedule.start is None
        assert not schedule.is_run(utc(2026, 1, 1, 0, 0, 30))
        assert schedule.start == utc(2026, 1, 1, 0, 1, 30)
        assert schedule.is_run(utc(2026, 1, 1, 0, 1, 30)) and schedule.is_run(utc(2026, 1, 1, 0, 2, 30))
        other = Interval(datetime.timedelta(minutes=10))
        assert other.next_after(T0) == utc(2026, 1, 1, 0, 10)
        assert other.next_after(T0 + datetime.timedelta(hours=1)) == utc(2026, 1, 1, 1, 10)

    def test_bad_arguments_are_refused_naming_them(self):
        """A bad interval, a naive start, or an end before start raise InvalidScheduleError naming them."""
        for seconds in (0, -1, math.nan, math.inf, True, "60", 0.0001):
            with pytest.raises(InvalidScheduleError, match=r"seconds|interval"):
                Interval(seconds)
        with pytest.raises(InvalidScheduleError, match="start must be an aware datetime"):
            Interval(60, start=datetime.datetime(2026, 1, 1))
        with pytest.raises(InvalidScheduleError, match=r"end .* is before start"):
            Interval(60, start=T0, end=T0 - SECOND)

    def test_describe_and_repr(self):
        """describe() names the interval and its bounds; repr shows every argument."""
        schedule = Interval(90, start=T0, end=T0 + datetime.timedelta(days=1))
        assert (
            schedule.describe()
            == "interval 1m30s from 2026-01-01T00:00:00+00:00 until 2026-01-02T00:00:00+00:00"
        )
        assert repr(Interval(60)).startswith("Interval(60, start=None, end=None)")


class TestAt:
    def test_once(self):
        """At fires at its instant only; next_after is that instant before it and None from it on."""
        when = utc(2026, 3, 1, 12, 30)
        schedule = At(when.astimezone(BERLIN))
        assert schedule.is_run(when) and not schedule.is_run(when + MINUTE)
        assert schedule.next_after(T0) == when
        assert schedule.next_after(when) is None and schedule.next_after(when + MINUTE) is None
        assert schedule.describe() == "at 2026-03-01T13:30:00+01:00"

    def test_naive_when_is_refused(self):
        """A naive datetime is refused at construction."""
        with pytest.raises(InvalidScheduleError, match="when must be an aware datetime"):
            At(datetime.datetime(2026, 1, 1))


class TestCronSyntax:
    @pytest.mark.parametrize(
        "expression, first",
        [
            ("* * * * *", utc(2026, 1, 1, 0, 1)),
            ("*/15 * * * *", utc(2026, 1, 1, 0, 15)),
            ("5/20 * * * *", utc(2026, 1, 1, 0, 5)),
            ("10-50/20 3 * * *", utc(2026, 1, 1, 3, 10)),
            ("0 9 * JAN,feb MON-FRI", utc(2026, 1, 1, 9)),
            ("0 0 * * SAT", utc(2026, 1, 3)),
            ("0 0 * * 7", utc(2026, 1, 4)),
            ("0 0 L * *", utc(2026, 1, 31)),
            ("0 0 L 2 *", utc(2026, 2, 28)),
            ("0 0 * * FRI#2", utc(2026, 1, 9)),
            ("0 0 * * 5L", utc(2026, 1, 30)),
            ("0 0 * * L5", utc(2026, 1, 30)),
            ("0 0 ? * MON", utc(2026, 1, 5)),
            ("@hourly", utc(2026, 1, 1, 1)),
            ("@daily", utc(2026, 1, 2)),
            ("@midnight", utc(2026, 1, 2)),
            ("@weekly", utc(2026, 1, 4)),
            ("@monthly", utc(2026, 2, 1)),
            ("@yearly", utc(2027, 1, 1)),
            ("@ANNUALLY", utc(2027, 1, 1)),
            ("* * * * * */20", utc(2026, 1, 1, 0, 0, 20)),
            ("0 0 29 2 *", utc(2028, 2, 29)),
        ],
    )
    def test_first_fire_time(self, expression, first):
        """Each piece of syntax gives the expected first fire time after 2026-01-01 00:00 UTC."""
        assert Cron(expression).next_after(T0) == first

    def test_day_of_month_or_day_of_week_when_both_restricted(self):
        """With both day fields restricted a day matches either (Vixie); a '*'-field makes it AND."""
        either = chain(Cron("0 0 13 * FRI"), T0, utc(2026, 2, 1))
        assert [t.day for t in either] == [2, 9, 13, 16, 23, 30]
        # "*/2" starts with "*": unrestricted for Vixie, so AND (croniter says OR here).
        both = chain(Cron("0 0 */2 * FRI"), T0, utc(2026, 3, 1))
        assert [(t.month, t.day) for t in both] == [(1, 9), (1, 23), (2, 13), (2, 27)]

    @pytest.mark.parametrize(
        "expression, field",
        [
            ("61 * * * *", "minute field '61': 61 is out of range 0-59"),
            ("* 24 * * *", "hour field '24'"),
            ("* * 0 * *", "day-of-month field '0'"),
            ("* * * 13 *", "month field '13'"),
            ("* * * FOO *", "month field 'FOO': 'FOO' is not a number or a name"),
            ("* * * * 8", "day-of-week field '8'"),
            ("* * * * MON#6", "day-of-week field 'MON#6'"),
            ("* * * * L", "day-of-week field 'L'"),
            ("L * * * *", "minute field 'L'"),
            ("*/0 * * * *", "step of '\\*/0' must be at least 1"),
            ("5-1 * * * *", "range '5-1' goes backwards"),
            ("1,,2 * * * *", "empty list item"),
            ("? * * * *", "'\\?' is only allowed"),
            ("* * * * * 60", "second field '60'"),
            ("* * * *", "needs 5 fields"),
            ("* * * * * * *", "needs 5 fields"),
            ("@reboot", "needs 5 fields"),
        ],
    )
    def test_bad_expression_names_the_field(self, expression, field):
        """A malformed expression raises InvalidScheduleError naming the expression and the field."""
        with pytest.raises(InvalidScheduleError, match=field) as info:
            Cron(expression)
        assert repr(expression) in str(info.value)

    @pytest.mark.parametrize(
        "expression, why",
        [
            ("0 0 31 2 *", "never fires"),
            ("0 0 30 2 *", "never fires"),
            ("0 0 31 4,6,9,11 *", "never fires"),
            ("0 0 * 2 MON#5", "less than once every 4 years"),
        ],
    )
    def test_expression_without_fire_time_in_4_years_is_refused(self, expression, why):
        """An expression that never fires, or not once in 4 years, is refused at construction."""
        with pytest.raises(InvalidScheduleError, match=why):
            Cron(expression)

    def test_not_a_string_and_bad_timezone(self):
        """A non-str expression raises InvalidScheduleError; a non-tzinfo timezone InvalidArgument."""
        with pytest.raises(InvalidScheduleError):
            Cron(5)
        with pytest.raises(InvalidArgument, match=r"^timezone must be"):
            Cron("* * * * *", timezone="Europe/Berlin")

    def test_describe_and_repr(self):
        """describe() names the expression and zone; repr is what builds it."""
        assert Cron("0 8 * * *", BERLIN).describe() == "cron '0 8 * * *' Europe/Berlin"
        assert str(Cron("0 8 * * *")) == "cron '0 8 * * *'"
        assert repr(Cron("0 8 * * *")) == "Cron('0 8 * * *')"
        assert "Europe/Berlin" in repr(Cron("0 8 * * *", BERLIN))

    def test_timezone_of_its_own_or_of_now(self):
        """Cron evaluates in its own zone if given, else in the zone of now; answers come in dt's zone."""
        seoul = ZoneInfo("Asia/Seoul")
        assert Cron("0 9 * * *")(T0.astimezone(seoul)) and not Cron("0 9 * * *")(T0)
        assert Cron("0 9 * * *", timezone=seoul)(T0)
        answer = Cron("0 9 * * *", timezone=seoul).next_after(T0)
        assert answer == utc(2026, 1, 2) and answer.tzinfo is UTC


class TestCronCache:
    def test_is_run_refills_once_per_fire_time(self, monkeypatch):
        """Asked every minute for 3 days, an hourly Cron computes its next fire time about once an hour."""
        calls = []
        real = _cron.next_instant
        monkeypatch.setattr(_cron, "next_instant", lambda *a: calls.append(a) or real(*a))
        cron = Cron("0 * * * *")
        due = [n for n in range(3 * 1440) if cron.is_run(T0 + n * MINUTE)]
        assert due == list(range(0, 3 * 1440, 60))
        assert len(calls) <= 3 * 24 + 1

    def test_questions_in_any_order(self):
        """is_run answers right when asked out of order, going back, or in other zones."""
        cron = Cron("*/5 * * * *")
        for n in [7, 5, 3, 0, 10, 600, 5, 4, 1441, 1440]:
            t = T0 + n * MINUTE
            assert cron.is_run(t) is (n % 5 == 0), n
            assert cron.is_run(t.astimezone(NEW_YORK)) is (n % 5 == 0), n
        assert not cron.is_run(T0 + datetime.timedelta(microseconds=1))
        assert not cron.is_run(T0 + SECOND)

    def test_end_of_time_leaves_it_usable(self):
        """Past the last representable year next_after is None, and the schedule still works after."""
        cron = Cron("0 0 1 1 *")
        assert cron.next_after(datetime.datetime(9999, 6, 1, tzinfo=UTC)) is None
        assert not cron.is_run(datetime.datetime(9999, 6, 1, tzinfo=UTC))
        assert cron.is_run(utc(2026, 1, 1)) and cron.next_after(T0) == utc(2027, 1, 1)


# -- the croniter comparison ----------------------------------------------------

# Kept to some 20,000 fire times in all: croniter takes ~150 us for each.
ORACLE = [
    "*/7 13 * * *",
    "5-55/20 */8 * * *",
    "0 */3 * * *",
    "15,45 8-18/5 * * MON-FRI",
    "0 0 L * *",
    "30 23 L 2 *",
    "0 12 * * FRI#2",
    "0 0 * * 1#1,5#3",
    "0 6 * * L0",
    "0 0 1,15 * *",
    "30 2 * JAN,JUL *",
    "0 0 13 * 5",
    "0 9 1 * MON",
    "0 0 1-7 * 1",
    "0 12 L * MON",
    "@daily",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "0 0 * * SAT,SUN",
    "0 22 * * 1-5",
    "*/30 9-17/4 * 2-11 *",
    "10/15 3 * * *",
    "0 4 8-14 * *",
    "0 0 * * 7",
    "59 23 31 12 *",
    "0 8,20 */2 * *",
    "0 0 12 * * */15",
    "*/20 6 * * * 30",
]


class TestCronAgainstCroniter:
    @pytest.mark.parametrize("expression", ORACLE)
    def test_a_year_of_fire_times_matches_croniter(self, expression):
        """Every fire time of 2026 in UTC equals croniter's, and is_run agrees at and around each one."""
        end = utc(2027, 1, 1, 0, 0, 1)
        it = croniter(expression, T0 - SECOND)
        theirs = []
        while (t := it.get_next(datetime.datetime)) < end:
            theirs.append(t)
        cron = Cron(expression)
        ours = chain(cron, T0 - SECOND, end)
        assert ours == theirs
        step = SECOND if len(expression.split()) == 6 else MINUTE
        fires = set(ours)
        for t in ours[:: max(1, len(ours) // 500)]:
            assert cron.is_run(t)
            assert cron.is_run(t - step) is (t - step in fires)
            assert cron.is_run(t + step) is (t + step in fires)

    def test_thirty_expressions(self):
        """The comparison covers 30 expressions."""
        assert len(set(ORACLE)) == 30


# -- daylight-saving time ---------------------------------------------------------

TRANSITIONS = {
    "berlin-spring": (BERLIN, utc(2026, 3, 29, 1)),
    "berlin-autumn": (BERLIN, utc(2026, 10, 25, 1)),
    "new-york-spring": (NEW_YORK, utc(2026, 3, 8, 7)),
    "new-york-autumn": (NEW_YORK, utc(2026, 11, 1, 6)),
}
DST_EXPRESSIONS = [
    "30 2 * * *",
    "59 1 * * *",
    "5 1-3 * * *",
    "0,30 1,2,3 * * *",
    "*/15 * * * *",
    "0 * * * *",
    "*/10 2 * * *",
    "* * * * *",
]


def brute_force(expression, zone, start, end):
    """The fire instants in [start, end) by the rules read literally, minute by minute.

    Whether a wall time matches is asked of the parsed fields (checked against
    croniter above); what is under test here is the mapping to real instants.
    """
    wildcard = expression.split()[0][0] == "*" or expression.split()[1][0] == "*"
    matches = _cron.parse(expression).wall_matches
    fires = []
    u = start
    while u < end:
        now, before = u.astimezone(zone), (u - MINUTE).astimezone(zone)
        wall = now.replace(tzinfo=None)
        fire = matches(wall) and (wildcard or now.fold == 0)
        if not wildcard and now.utcoffset() > before.utcoffset():
            skipped = before.replace(tzinfo=None) + MINUTE
            while skipped < wall:  # the wall minutes the jump skipped
                fire = fire or matches(skipped)
                skipped += MINUTE
        if fire:
            fires.append(u)
        u += MINUTE
    return fires


class TestDaylightSaving:
    def test_berlin_fixed_time(self):
        """Berlin: a skipped 02:30 fires once at the jump (03:00 CEST); a repeated one once, in CEST."""
        cron = Cron("30 2 * * *", BERLIN)
        spring = chain(cron, utc(2026, 3, 28, 12), utc(2026, 3, 30, 12))
        assert local(spring, BERLIN) == ["03:00+0200", "02:30+0200"]
        assert spring[0] == utc(2026, 3, 29, 1)
        autumn = chain(cron, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12))
        assert autumn == [utc(2026, 10, 25, 0, 30)] and local(autumn, BERLIN) == ["02:30+0200"]

    def test_new_york_fixed_time(self):
        """New York: a skipped 02:30 fires at 03:00 EDT; a repeated 01:30 fires once, in EDT."""
        spring = chain(Cron("30 2 * * *", NEW_YORK), utc(2026, 3, 8), utc(2026, 3, 9))
        assert spring == [utc(2026, 3, 8, 7)] and local(spring, NEW_YORK) == ["03:00-0400"]
        autumn = chain(Cron("30 1 * * *", NEW_YORK), utc(2026, 11, 1), utc(2026, 11, 2))
        assert local(autumn, NEW_YORK) == ["01:30-0400"]

    def test_berlin_wildcard(self):
        """Berlin: */15 fires every 15 real minutes: nothing for the skipped hour, both repeated hours."""
        cron = Cron("*/15 * * * *", BERLIN)
        spring = chain(cron, utc(2026, 3, 29, 0, 40), utc(2026, 3, 29, 1, 20))
        assert local(spring, BERLIN) == ["01:45+0100", "03:00+0200", "03:15+0200"]
        autumn = chain(cron, utc(2026, 10, 24, 23, 50), utc(2026, 10, 25, 2, 10))
        assert local(autumn, BERLIN) == [
            "02:00+0200", "02:15+0200", "02:30+0200", "02:45+0200",
            "02:00+0100", "02:15+0100", "02:30+0100", "02:45+0100",
            "03:00+0100",
        ]  # fmt: skip
        assert all(b - a == datetime.timedelta(minutes=15) for a, b in itertools.pairwise(autumn))

    def test_new_york_wildcard_hourly(self):
        """New York: an hourly job fires every real hour across both transitions."""
        cron = Cron("0 * * * *", NEW_YORK)
        for start in (utc(2026, 3, 8, 4), utc(2026, 11, 1, 3)):
            fires = chain(cron, start, start + datetime.timedelta(hours=6))
            assert fires == [start + datetime.timedelta(hours=h) for h in range(1, 6)]

    @pytest.mark.parametrize("transition", sorted(TRANSITIONS))
    @pytest.mark.parametrize("expression", DST_EXPRESSIONS)
    def test_matches_the_rules_minute_by_minute(self, transition, expression):
        """Around each transition, next_after chains and is_run equal the brute-force reading of the rules."""
        zone, jump = TRANSITIONS[transition]
        start, end = jump - datetime.timedelta(hours=3), jump + datetime.timedelta(hours=3)
        want = brute_force(expression, zone, start, end)
        cron = Cron(expression)  # the zone comes from the times it is asked about
        assert chain(cron, (start - SECOND).astimezone(zone), end) == want
        minutes = [start + n * MINUTE for n in range(6 * 60)]
        assert [u for u in minutes if cron.is_run(u.astimezone(zone))] == want
        # next_after from any point (whole and half minutes) is the first wanted time after it.
        beyond = chain(cron, (end - SECOND).astimezone(zone), end + datetime.timedelta(days=2))[:1]
        for u in minutes[::11]:
            for q in (u, u + datetime.timedelta(seconds=30)):
                expected = next(t for t in want + beyond if t > q)
                assert cron.next_after(q.astimezone(zone)).astimezone(UTC) == expected, q


# -- combinations -------------------------------------------------------------------


class TestCombinations:
    def test_any_of(self):
        """AnyOf fires when any part fires; next_after is the earliest of theirs."""
        schedule = AnyOf(Cron("0 8 * * *"), At(utc(2026, 1, 1, 3)), Every(hours=12))
        assert chain(schedule, T0, utc(2026, 1, 2, 1)) == [
            utc(2026, 1, 1, 3),
            utc(2026, 1, 1, 8),
            utc(2026, 1, 1, 12),
            utc(2026, 1, 2, 0),
        ]
        assert schedule.is_run(utc(2026, 1, 1, 3)) and not schedule.is_run(utc(2026, 1, 1, 4))
        assert AnyOf(At(T0)).next_after(T0) is None

    def test_all_of(self):
        """AllOf fires only when every part fires; next_after leapfrogs to the next common time."""
        schedule = AllOf(Every(minutes=6), Every(minutes=10))
        assert chain(schedule, T0, T0 + datetime.timedelta(hours=2)) == [
            T0 + datetime.timedelta(minutes=m) for m in (30, 60, 90)
        ]
        assert schedule.is_run(T0 + datetime.timedelta(minutes=30)) and not schedule.is_run(T0 + 6 * MINUTE)
        monday_13th = AllOf(Cron("0 0 13 * *"), Cron("0 0 * * MON"))
        assert monday_13th.next_after(T0) == utc(2026, 4, 13)

    def test_all_of_without_common_time(self):
        """AllOf gives None past its 4-year horizon, and a clear error when parts never meet."""
        assert AllOf(At(utc(2026, 1, 2)), At(utc(2026, 1, 3))).next_after(T0) is None
        assert AllOf(At(utc(2031, 1, 1)), Every(minutes=1)).next_after(T0) is None
        never = AllOf(Every(seconds=2), Every(seconds=2, offset=1))
        with pytest.raises(InvalidScheduleError, match="no common fire time found"):
            never.next_after(T0)

    def test_bad_parts_are_refused(self):
        """No part, or a part that is not a schedule, is refused naming its position."""
        with pytest.raises(InvalidScheduleError, match="at least one"):
            AnyOf()
        with pytest.raises(InvalidArgument, match=r"^AllOf schedules\[1\] must be"):
            AllOf(Every(minutes=1), lambda now: True)

    def test_describe(self):
        """describe() nests the parts' descriptions."""
        schedule = AnyOf(Every(minutes=5), AllOf(Cron("0 8 * * *"), At(T0)))
        assert schedule.describe() == (
            "any of (every 5m, all of (cron '0 8 * * *', at 2026-01-01T00:00:00+00:00))"
        )
        assert repr(schedule).startswith("AnyOf(Every(days=0")


# -- properties ------------------------------------------------------------------------

TIMES = st.datetimes(
    min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2090, 1, 1), timezones=st.just(UTC)
)
PROPERTY_CRONS = [
    "*/7 * * * *",
    "0 */3 * * *",
    "15,45 8-18 * * MON-FRI",
    "0 0 L * *",
    "0 12 * * FRI#2",
    "0 0 13 * 5",
    "*/20 6 * * * 30",
    "0 0 29 2 *",
]


class TestProperties:
    @given(
        TIMES,
        st.integers(1, 86400 * 3),
        st.integers(-86400, 86400),
        st.floats(0, 1, exclude_max=True),
    )
    def test_every(self, t, period, offset, where):
        """Every: next_after(t) > t, fires, and the whole seconds between t and it do not fire."""
        schedule = Every(seconds=period, offset=offset)
        n = schedule.next_after(t)
        assert t < n <= t + datetime.timedelta(seconds=period) and schedule.is_run(n)
        inside = t.replace(microsecond=0) + datetime.timedelta(seconds=int((n - t).total_seconds() * where))
        assert inside >= n or inside <= t or not schedule.is_run(inside)

    @given(TIMES, TIMES, st.integers(1, 86400), st.floats(0, 1, exclude_max=True))
    def test_interval(self, t, start, period, where):
        """Interval: next_after(t) > t, fires, is on the start's grid, and nothing between fires."""
        start = start.replace(microsecond=start.microsecond // 1000 * 1000)  # kept to the millisecond
        schedule = Interval(period, start=start)
        n = schedule.next_after(t)
        assert n > t and schedule.is_run(n) and (n - start).total_seconds() % period == 0
        assert n == start or n - datetime.timedelta(seconds=period) <= t
        inside = t + (n - t) * where
        inside = inside.replace(microsecond=inside.microsecond // 1000 * 1000)
        assert not t < inside < n or not schedule.is_run(inside)

    @given(TIMES, st.sampled_from(PROPERTY_CRONS), st.integers(1, 1440))
    def test_cron(self, t, expression, steps):
        """Cron: next_after(t) > t, fires, and no grid time between t and it fires (up to 1440 looked at)."""
        cron = Cron(expression)
        n = cron.next_after(t)
        assert n > t and cron.is_run(n)
        step = SECOND if len(expression.split()) == 6 else MINUTE
        first = (
            t.replace(second=0, microsecond=0) + step if step == MINUTE else t.replace(microsecond=0) + step
        )
        grid = [first + i * step for i in range(min(steps, int((n - first) / step)))]
        assert not any(cron.is_run(g) for g in grid if g < n)
        assert cron.next_after(n - datetime.timedelta(microseconds=1)) == n

    @given(st.sampled_from(PROPERTY_CRONS), TIMES)
    def test_cron_agrees_with_itself_through_zones(self, expression, t):
        """The same Cron in UTC answers the same instant whatever the zone of the fixed-offset dt."""
        offset = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
        cron = Cron(expression, UTC)
        assert cron.next_after(t) == cron.next_after(t.astimezone(offset))


def test_module_exports():
    """schedules exports its six strategies and InvalidScheduleError."""
    assert sorted(schedules.__all__) == [
        "AllOf",
        "AnyOf",
        "At",
        "Cron",
        "Every",
        "Interval",
        "InvalidScheduleError",
    ]
