"""Tests for greenworks.backoff: the seed's exact tables, validation and bounds."""

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from zope.interface.verify import verifyClass, verifyObject

from greenworks.backoff import ExponentialBackoff, StaticBackoff
from greenworks.exceptions import InvalidArgument
from greenworks.interfaces import IBackoff


class FixedRandom:
    """An rng whose random() returns a fixed value, for pinning the jitter term."""

    def __init__(self, value):
        self.value = value

    def random(self):
        return self.value


class TestInterfaces:
    def test_static_backoff_provides_ibackoff(self):
        """StaticBackoff implements and provides IBackoff."""
        assert verifyClass(IBackoff, StaticBackoff)
        assert verifyObject(IBackoff, StaticBackoff(1.0))

    def test_exponential_backoff_provides_ibackoff(self):
        """ExponentialBackoff implements and provides IBackoff."""
        assert verifyClass(IBackoff, ExponentialBackoff)
        assert verifyObject(IBackoff, ExponentialBackoff(1.0, 2.0))


class TestStaticBackoff:
    def test_constant_from_attempt_zero(self):
        """[issue 14 item 7] StaticBackoff(s).duration(a) == s for every attempt, 0 included."""
        backoff = StaticBackoff(0.01)
        assert [backoff.duration(a) for a in range(10)] == [0.01] * 10

    @pytest.mark.parametrize("sleep", [-1, float("nan"), float("inf"), "1", None, True])
    def test_bad_sleep_is_rejected_naming_it(self, sleep):
        """A negative, non-finite or non-number sleep raises InvalidArgument naming `sleep`."""
        with pytest.raises(InvalidArgument, match="sleep"):
            StaticBackoff(sleep)

    @pytest.mark.parametrize("attempt", [-1, 1.5, "2", True])
    def test_bad_attempt_is_rejected(self, attempt):
        """A negative or non-int attempt raises InvalidArgument (a ValueError) naming `attempt`."""
        with pytest.raises(ValueError, match="attempt"):
            StaticBackoff(1.0).duration(attempt)

    def test_equality_and_repr(self):
        """Equal sleeps make equal, hashable backoffs with a readable repr."""
        assert StaticBackoff(2) == StaticBackoff(2.0)
        assert len({StaticBackoff(2), StaticBackoff(2.0), StaticBackoff(3)}) == 2
        assert repr(StaticBackoff(2)) == "StaticBackoff(2.0)"


class TestExponentialWithoutJitter:
    @pytest.mark.parametrize(
        ("initial", "expected"),
        [
            (1.0, [0, 1, 2, 4, 8, 16, 32, 60, 60, 60, 60]),
            (2.0, [0, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60]),
            (3.0, [0, 3, 6, 12, 24, 48, 60, 60, 60]),
        ],
    )
    def test_go_tables(self, initial, expected):
        """[MATCH] ExponentialBackoff(initial, 60 s, 0) gives the seed's exact tables for initial 1, 2 and
        3 s."""
        backoff = ExponentialBackoff(initial, 60.0, 0)
        assert [backoff.duration(a) for a in range(len(expected))] == [float(e) for e in expected]

    def test_max_equal_to_initial_is_a_constant_backoff(self):
        """max == initial is allowed and gives initial for every attempt after 0."""
        backoff = ExponentialBackoff(5.0, 5.0)
        assert [backoff.duration(a) for a in range(4)] == [0.0, 5.0, 5.0, 5.0]


class TestExponentialWithJitter:
    MINS = [0, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    MAXES = [0, 2, 4, 8, 16, 32, 60, 60, 60, 60]

    def test_extreme_random_draws_stay_within_go_mins_and_maxes(self):
        """[MATCH] Initial 2 s, J 0.5: U = 0 gives the window floors, U -> 1 its tops, within the seed's
        mins/maxes."""
        floors = ExponentialBackoff(2.0, 60.0, 0.5, rng=FixedRandom(0.0))
        tops = ExponentialBackoff(2.0, 60.0, 0.5, rng=FixedRandom(1 - 2**-53))
        assert [floors.duration(a) for a in range(10)] == [0, 1, 2, 4, 8, 16, 32, 60, 60, 60]
        for attempt in range(10):
            assert self.MINS[attempt] <= floors.duration(attempt) <= self.MAXES[attempt]
            assert self.MINS[attempt] <= tops.duration(attempt) <= self.MAXES[attempt]
        # Attempt 6 is the probed one: its window [32, 64) is cut at max, so it lies in [32, 60].
        assert tops.duration(6) == 60.0

    def test_capped_attempts_are_exactly_max_whatever_the_random(self):
        """[MATCH] Once (1-J)*2^(a-1)*initial reaches max every wait is exactly max, jitter gone (attempt
        >= 7)."""
        for u in (0.0, 0.5, 0.999999):
            backoff = ExponentialBackoff(2.0, 60.0, 0.5, rng=FixedRandom(u))
            assert [backoff.duration(a) for a in range(7, 12)] == [60.0] * 5

    def test_go_bounds_with_real_randomness(self):
        """[MATCH] Initial 2 s, J 0.5: each attempt lies between the seed's mins and maxes (upper bound
        open)."""
        backoff = ExponentialBackoff(2.0, 60.0, 0.5, rng=random.Random(4))
        for _ in range(200):
            for attempt in range(1, len(self.MINS)):
                d = backoff.duration(attempt)
                assert self.MINS[attempt] <= d <= self.MAXES[attempt]
                if self.MAXES[attempt] < 60:
                    assert d < self.MAXES[attempt]

    def test_jitter_is_random_below_the_cap(self):
        """Two rngs give different waits for the same uncapped attempt (the jitter is really applied)."""
        low = ExponentialBackoff(1.0, 600.0, 0.5, rng=FixedRandom(0.1)).duration(4)
        high = ExponentialBackoff(1.0, 600.0, 0.5, rng=FixedRandom(0.9)).duration(4)
        assert low == pytest.approx(8 * 0.5 + 8 * 0.5 * 0.1)
        assert high == pytest.approx(8 * 0.5 + 8 * 0.5 * 0.9)

    def test_jitter_at_cap_keeps_spreading_capped_waits(self):
        """[FIX/EXT] jitter_at_cap=True keeps capped waits jittered in [max*(1-J), max]."""
        low = ExponentialBackoff(2.0, 60.0, 0.5, jitter_at_cap=True, rng=FixedRandom(0.0))
        mid = ExponentialBackoff(2.0, 60.0, 0.5, jitter_at_cap=True, rng=FixedRandom(0.5))
        assert low.duration(10) == 30.0
        assert mid.duration(10) == 45.0
        assert low.duration(10**8) == 30.0

    def test_jitter_at_cap_without_jitter_is_max(self):
        """jitter_at_cap with J = 0 still gives exactly max once capped."""
        assert ExponentialBackoff(2.0, 60.0, 0.0, jitter_at_cap=True).duration(50) == 60.0


class TestExponentialHighAttempts:
    @pytest.mark.parametrize("attempt", [10**2, 10**3, 10**4, 10**5, 10**6, 10**7, 10**8, 10**30])
    def test_huge_attempts_give_exactly_max(self, attempt):
        """[MATCH] Attempts 1e2..1e8 (and beyond) give a positive wait equal to max, without OverflowError."""
        backoff = ExponentialBackoff(60.0, 300.0, 0.5)
        assert backoff.duration(attempt) == 300.0

    def test_full_jitter_with_huge_attempt_is_not_nan(self):
        """[FIX] J = 1 with a huge attempt gives max (Go: Inf*0 = NaN, a negative wait)."""
        backoff = ExponentialBackoff(2.0, 60.0, 1.0, rng=FixedRandom(0.5))
        d = backoff.duration(10**8)
        assert d == 60.0


class TestExponentialValidation:
    @pytest.mark.parametrize(
        ("kwargs", "argument"),
        [
            ({"initial": 0.0, "max": 1.0}, "initial"),
            ({"initial": -1.0, "max": 1.0}, "initial"),
            ({"initial": float("nan"), "max": 1.0}, "initial"),
            ({"initial": 2.0, "max": 1.0}, "max"),
            ({"initial": 1.0, "max": float("inf")}, "max"),
            ({"initial": 1.0, "max": 2.0, "jitter_proportion": -0.1}, "jitter_proportion"),
            ({"initial": 1.0, "max": 2.0, "jitter_proportion": 1.5}, "jitter_proportion"),
            ({"initial": 1.0, "max": 2.0, "jitter_proportion": float("nan")}, "jitter_proportion"),
            ({"initial": 1.0, "max": 2.0, "rng": object()}, "rng"),
        ],
    )
    def test_invalid_parameters_raise_naming_the_argument(self, kwargs, argument):
        """[FIX/EXT] Invalid parameters raise InvalidArgument at construction, naming the argument and
        value."""
        with pytest.raises(InvalidArgument, match=argument) as info:
            ExponentialBackoff(**kwargs)
        assert isinstance(info.value, ValueError)

    def test_negative_attempt_raises(self):
        """A negative attempt raises ValueError instead of Go's 2^(a-1) fraction."""
        with pytest.raises(ValueError, match="attempt"):
            ExponentialBackoff(1.0, 2.0).duration(-1)

    def test_equality_ignores_the_rng(self):
        """Backoffs with the same parameters are equal and hash alike; repr shows them."""
        a = ExponentialBackoff(1, 60, 0.5)
        b = ExponentialBackoff(1.0, 60.0, 0.5, rng=random.Random(1))
        assert a == b and hash(a) == hash(b)
        assert a != ExponentialBackoff(1, 60, 0.5, jitter_at_cap=True)
        assert repr(a) == "ExponentialBackoff(1.0, 60.0, jitter_proportion=0.5)"


class TestExponentialProperties:
    @given(
        initial=st.floats(min_value=1e-3, max_value=1e3),
        factor=st.floats(min_value=1.0, max_value=1e6),
        jitter=st.floats(min_value=0.0, max_value=1.0),
        u=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
        attempt=st.integers(min_value=0, max_value=10**9),
        at_cap=st.booleans(),
    )
    def test_waits_follow_the_formula(self, initial, factor, jitter, u, attempt, at_cap):
        """Every wait is finite, in [0, max], 0 for attempt 0, and within the seed's jitter window (or
        max)."""
        maximum = initial * factor
        backoff = ExponentialBackoff(initial, maximum, jitter, jitter_at_cap=at_cap, rng=FixedRandom(u))
        d = backoff.duration(attempt)
        assert math.isfinite(d)
        assert 0.0 <= d <= maximum
        if attempt == 0:
            assert d == 0.0
            return
        # 2^(a-1) with the exponent clamped: the cap is reached long before 2^1023.
        ratio = math.ldexp(1.0, min(attempt - 1, 1023))
        if at_cap:
            ratio = min(ratio, factor)
        low = ratio * (1 - jitter) * initial
        grow = ratio * initial
        if low >= maximum and not (at_cap and jitter > 0):
            assert d == maximum
        else:
            # Float rounding may land one ulp outside the exact window.
            assert d >= min(low, maximum) * (1 - 1e-9)
            assert d <= grow * (1 + 1e-9)

    @given(
        attempt=st.integers(min_value=1, max_value=10**9),
        jitter=st.floats(min_value=0.0, max_value=1.0),
    )
    def test_waits_never_decrease_without_randomness_changes(self, attempt, jitter):
        """With a fixed random draw, the wait never shrinks as the attempt grows."""
        backoff = ExponentialBackoff(0.5, 120.0, jitter, rng=FixedRandom(0.25))
        assert backoff.duration(attempt) <= backoff.duration(attempt + 1)
