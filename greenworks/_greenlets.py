"""
The registry of every greenlet greenworks spawns.

Every component spawns through :func:`spawn`, which names the greenlet (so
``gevent.util.format_run_info()`` reads well) and remembers it in a weak set.
The test suite asks :func:`alive` after each test, which is how "no greenlet
is left after ``stop()``" is checked rather than hoped for.
"""

import weakref
from collections.abc import Callable
from typing import Any

from gevent import Greenlet

__all__ = ["alive", "spawn"]

_spawned: weakref.WeakSet[Greenlet] = weakref.WeakSet()


def spawn(name: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Greenlet:
    """Start ``func(*args, **kwargs)`` in a new greenlet called *name*.

    :param str name: shown by ``format_run_info``, e.g. ``"greenworks.dispatcher[3]"``.
    :return gevent.Greenlet: the started greenlet.
    """
    greenlet = Greenlet(func, *args, **kwargs)
    greenlet.name = name
    _spawned.add(greenlet)
    greenlet.start()
    return greenlet


def alive() -> list[Greenlet]:
    """Return the greenlets spawned by greenworks that have not finished yet."""
    return [g for g in list(_spawned) if not g.dead]
