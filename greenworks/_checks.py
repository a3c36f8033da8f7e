"""
The type predicates behind every argument check in greenworks.

``bool`` is an ``int`` in Python, but ``timeout=True`` is always a mistake,
so both predicates refuse it. Bounds, NaN handling and the error message stay
at each call site, next to the argument they describe.
"""

__all__ = ["is_int", "is_real"]


def is_int(value):
    """Whether *value* is an ``int`` and not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value):
    """Whether *value* is an ``int`` or ``float`` and not a ``bool`` (NaN and infinities pass)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
