"""
The one place where greenworks checks the arguments every component shares.

Every public entry point that takes a duration passes it through
:func:`seconds`, every count through :func:`count` and every name through
:func:`name`, so one rule holds everywhere and a mistake is reported at the
call that made it, naming the argument and the value received.

Why so strict: a NaN handed to the event loop freezes the whole process (no
``gevent.Timeout`` fires any more), ``True`` is an ``int`` to Python but
``timeout=True`` is always a mistake, and a string that happens to work in
one place and raise a raw ``TypeError`` in another helps nobody.
"""

import math
from typing import Any, Literal, TypeGuard, overload

from greenworks.exceptions import invalid_argument

__all__ = ["count", "is_int", "is_real", "name", "seconds"]


def is_int(value: object) -> TypeGuard[int]:
    """Whether *value* is an ``int`` and not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: object) -> TypeGuard[float]:
    """Whether *value* is an ``int`` or ``float`` and not a ``bool`` (NaN and infinities pass)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _describe(none: bool, positive: bool, negative: bool) -> str:
    if positive:
        text = "a number of seconds > 0"
    elif negative:
        text = "a number of seconds (<= 0: do not wait)"
    else:
        text = "a number of seconds >= 0"
    return text + (" or None" if none else "")


@overload
def seconds(
    argument: str,
    value: Any,
    *,
    none: Literal[False] = False,
    positive: bool = False,
    negative: bool = False,
) -> float: ...


@overload
def seconds(
    argument: str,
    value: Any,
    *,
    none: bool,
    positive: bool = False,
    negative: bool = False,
) -> float | None: ...


def seconds(
    argument: str,
    value: Any,
    *,
    none: bool = False,
    positive: bool = False,
    negative: bool = False,
) -> float | None:
    """Return *value* as float seconds, or raise `InvalidArgument` naming *argument*.

    The rules, the same for every duration in greenworks:

    - a real number (``int`` or ``float``), never a ``bool``, never NaN;
    - ``None`` only with *none* (it means "no limit"), and then ``inf``
      means the same and is returned as ``None``; without *none*, ``inf``
      is refused, because nothing else could mean "for ever";
    - with *positive* the value must be ``> 0`` (a period, a ttl);
    - with *negative* a value ``<= 0`` is accepted and returned as ``0.0``
      ("do not wait": a poll), otherwise it must be ``>= 0``.

    :param str argument: the parameter's name as the caller spelled it.
    :return: a finite ``float``, or ``None``.
    :raises InvalidArgument: naming *argument* and showing *value*.
    """
    if value is None:
        if none:
            return None
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        if value == math.inf:
            if none:
                return None
        elif value > 0:
            return float(value)
        elif negative or (value == 0 and not positive):
            return 0.0
    raise invalid_argument(argument, value, _describe(none, positive, negative))


@overload
def count(argument: str, value: Any, *, minimum: int = 0, none: Literal[False] = False) -> int: ...


@overload
def count(argument: str, value: Any, *, minimum: int = 0, none: bool) -> int | None: ...


def count(argument: str, value: Any, *, minimum: int = 0, none: bool = False) -> int | None:
    """Return *value* if it is an ``int >= minimum`` (not a ``bool``); ``None`` only with *none*.

    :raises InvalidArgument: naming *argument* and showing *value*.
    """
    if value is None and none:
        return None
    if not is_int(value) or value < minimum:
        raise invalid_argument(argument, value, "an int >= %d%s" % (minimum, " or None" if none else ""))
    return value


def name(argument: str, value: Any) -> str:
    """Return *value* if it is a non-empty ``str`` with something besides spaces in it.

    :raises InvalidArgument: naming *argument* and showing *value*.
    """
    if not isinstance(value, str) or not value.strip():
        raise invalid_argument(argument, value, "a non-empty str")
    return value
