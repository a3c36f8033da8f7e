"""
Pure delay strategies: how long to wait before the next attempt.

A backoff is a stateless object with one method, ``duration(attempt)``,
returning float seconds; attempt 0 (the first try) always waits 0. Nothing
here sleeps or reads the time: :func:`greenworks.runutil.wait` does the
waiting, cancellably, on a context's clock::

    backoff = ExponentialBackoff(1.0, 60.0, jitter_proportion=0.5)
    attempt = 0
    while True:
        wait(ctx, backoff.duration(attempt))
        ...

Both classes are immutable, so one instance can be shared by any number of
greenlets.
"""

import math
import random
from typing import Protocol

from zope.interface import implementer

from greenworks import _checks
from greenworks._checks import is_int, is_real
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import IBackoff

__all__ = ["BackoffLike", "ExponentialBackoff", "StaticBackoff"]

# 2.0 ** 1024 overflows a float; beyond this exponent every sensible cap has
# long been reached, so the exponent is clamped instead of computing infinity
# (which Go turns into NaN when multiplied by a zero jitter share).
_MAX_EXPONENT = 1023


class BackoffLike(Protocol):
    """The static type of an `IBackoff` (zope.interface declarations are invisible to type checkers)."""

    def duration(self, attempt: int) -> float: ...


class _Random(Protocol):
    def random(self) -> float: ...


def _check_attempt(attempt: object) -> int:
    if not is_int(attempt) or attempt < 0:
        raise invalid_argument("attempt", attempt, "an int >= 0")
    return attempt


@implementer(IBackoff)
class StaticBackoff:
    """Default implementation of `IBackoff` that always waits the same time.

    Every attempt waits *sleep* seconds, attempt 0 included: a constant
    backoff is constant (returning 0 for attempt 0, as the original did, made a
    retry of a worker that returns at once spin).

    :param float sleep: seconds to wait before each retry, ``>= 0``.
    :raises InvalidArgument: if *sleep* is negative or not a finite number.
    """

    __slots__ = ("_sleep",)

    def __init__(self, sleep: float) -> None:
        self._sleep = _checks.seconds("sleep", sleep)

    @property
    def sleep(self) -> float:
        """The wait before every attempt (float seconds, read-only)."""
        return self._sleep

    def duration(self, attempt: int) -> float:
        """Return ``sleep``, whatever the attempt.

        :raises InvalidArgument: for a negative or non-int *attempt* (a
            negative attempt is a caller bug).
        """
        _check_attempt(attempt)
        return self._sleep

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StaticBackoff):
            return NotImplemented
        return self._sleep == other._sleep

    def __hash__(self) -> int:
        return hash((StaticBackoff, self._sleep))

    def __repr__(self) -> str:
        return "StaticBackoff(%r)" % (self._sleep,)


@implementer(IBackoff)
class ExponentialBackoff:
    """Default implementation of `IBackoff` that doubles the wait each attempt.

    The seed's formula, exactly: for attempt ``a >= 1`` with ``J`` the
    jitter proportion and ``U`` uniform in ``[0, 1)``::

        grow  = 2 ** (a - 1)
        total = min(grow * (1 - J) + grow * J * U,  max / initial)
        wait  = initial * total          (exactly ``max`` once capped)

    So a wait lies in ``[initial * 2**(a-1) * (1-J), initial * 2**(a-1))``
    and is capped at exactly *max*. The cap is applied before multiplying by
    *initial*, so any attempt, however large, gives a finite wait and never
    an ``OverflowError``. Note what this means for jitter: once the
    un-jittered part ``grow * (1 - J)`` reaches the cap, every caller waits
    exactly *max*, all in step. Pass ``jitter_at_cap=True`` to cap ``grow``
    itself at ``max / initial`` instead, so capped waits keep their jitter
    and lie in ``[max * (1-J), max]``.

    :param float initial: the wait before attempt 1, ``> 0`` seconds.
    :param float max: the longest wait, ``>= initial`` seconds.
    :param float jitter_proportion: the share ``J`` of each wait that is
        random, in ``[0, 1]``; 0 (the default) gives exact doubling.
    :keyword bool jitter_at_cap: keep the jitter once the cap is reached
        (default False: the seed's behaviour).
    :keyword rng: an object with a ``random()`` method returning a float in
        ``[0, 1)``, e.g. ``random.Random(42)`` for repeatable tests; default
        the :mod:`random` module.
    :raises InvalidArgument: for ``initial <= 0``, ``max < initial``, a
        jitter proportion outside ``[0, 1]``, a non-finite number or an
        *rng* without ``random()``. (Go silently produced NaN or negative
        waits for these.)
    """

    __slots__ = ("_initial", "_max", "_jitter", "_cap", "_jitter_at_cap", "_random")

    def __init__(
        self,
        initial: float,
        max: float,
        jitter_proportion: float = 0.0,
        *,
        jitter_at_cap: bool = False,
        rng: _Random | None = None,
    ) -> None:
        self._initial = _checks.seconds("initial", initial, positive=True)
        self._max = _checks.seconds("max", max)
        if self._max < self._initial:
            raise invalid_argument("max", max, "a finite number of seconds >= initial (%r)" % initial)
        if not is_real(jitter_proportion) or not 0.0 <= jitter_proportion <= 1.0:
            raise invalid_argument("jitter_proportion", jitter_proportion, "a number in [0, 1]")
        self._jitter = float(jitter_proportion)
        if rng is None:
            rng = random
        if not callable(getattr(rng, "random", None)):
            raise invalid_argument("rng", rng, "an object with a random() method, e.g. random.Random()")
        self._random = rng.random
        self._jitter_at_cap = bool(jitter_at_cap)
        self._cap = self._max / self._initial

    @property
    def initial(self) -> float:
        """The wait before attempt 1 (float seconds, read-only)."""
        return self._initial

    @property
    def max(self) -> float:
        """The longest wait (float seconds, read-only)."""
        return self._max

    @property
    def jitter_proportion(self) -> float:
        """The random share of each wait, in ``[0, 1]`` (float, read-only)."""
        return self._jitter

    @property
    def jitter_at_cap(self) -> bool:
        """Whether capped waits keep their jitter (bool, read-only)."""
        return self._jitter_at_cap

    def duration(self, attempt: int) -> float:
        """Return the seconds to wait before *attempt*; see the class docstring.

        Never blocks; safe to call from any greenlet.

        :raises InvalidArgument: for a negative or non-int *attempt*.
        """
        if _check_attempt(attempt) == 0:
            return 0.0
        jitter = self._jitter
        cap = self._cap
        grow = math.ldexp(1.0, min(attempt - 1, _MAX_EXPONENT))
        if self._jitter_at_cap and grow > cap:
            grow = cap
        floor = grow * (1.0 - jitter)
        if floor >= cap:
            return self._max
        total = floor + grow * jitter * self._random() if jitter else floor
        if total >= cap:
            return self._max
        # initial * total can round one ulp past max even when total < cap.
        return min(self._initial * total, self._max)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExponentialBackoff):
            return NotImplemented
        return (self._initial, self._max, self._jitter, self._jitter_at_cap) == (
            other._initial,
            other._max,
            other._jitter,
            other._jitter_at_cap,
        )

    def __hash__(self) -> int:
        return hash((ExponentialBackoff, self._initial, self._max, self._jitter, self._jitter_at_cap))

    def __repr__(self) -> str:
        return "ExponentialBackoff(%r, %r, jitter_proportion=%r%s)" % (
            self._initial,
            self._max,
            self._jitter,
            ", jitter_at_cap=True" if self._jitter_at_cap else "",
        )
