"""
The registry of every greenlet greenworks spawns.

Every component spawns through :func:`spawn`, which names the greenlet (so
``gevent.util.format_run_info()`` reads well) and remembers it in a weak set.
Its greenlets record no spawning stack: gevent keeps, for each greenlet, up
to ten frames of whatever started it (for ``format_run_info``); for ours
those are always the same component internals, the name already says which
component and task a greenlet serves, and they cost about 650 bytes per
greenlet, a twelfth of a parked worker.
The test suite asks :func:`alive` after each test, which is how "no greenlet
is left after ``stop()``" is checked rather than hoped for.
"""

import weakref
from collections.abc import Callable
from typing import Any

from gevent import Greenlet

__all__ = ["alive", "spawn"]

_spawned: weakref.WeakSet[Greenlet] = weakref.WeakSet()


class _Greenlet(Greenlet):  # type: ignore[misc]  # gevent's Greenlet is untyped (Any)
    """A plain gevent ``Greenlet`` that records no spawning stack (see the module docstring)."""

    __slots__ = ()
    spawning_stack_limit = 0


def spawn(name: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Greenlet:
    """Start ``func(*args, **kwargs)`` in a new greenlet called *name*.

    :param str name: shown by ``format_run_info``, e.g. ``"greenworks.dispatcher[3]"``.
    :return gevent.Greenlet: the started greenlet.
    """
    greenlet = _Greenlet(func, *args, **kwargs)
    greenlet.name = name
    _spawned.add(greenlet)
    greenlet.start()
    return greenlet


def alive() -> list[Greenlet]:
    """Return the greenlets spawned by greenworks that have not finished yet."""
    return [g for g in list(_spawned) if not g.dead]
