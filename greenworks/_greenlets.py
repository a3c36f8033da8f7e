"""
The registry of every greenlet greenworks spawns.

Every component spawns through :func:`spawn`, which names the greenlet (so
``gevent.util.format_run_info()`` reads well), gives it an ``owner`` (the
component's `Lifecycle` sets itself there), and remembers it in one process-wide registry
of weak references. That registry is the only one: a component's own
greenlets, and the component a greenlet belongs to, are read from the
greenlet's ``owner`` rather than kept in more weak sets (each entry of one
costs about 180 bytes per greenlet and a Python-level insertion per spawn).
The registry is a dict used as an ordered set, keyed by the weak references
themselves: a dict entry is under half the bytes of a set entry at these
sizes, and a spawn adds it in C. Being weak, it never keeps a dead greenlet,
even one killed before it ever started: the reference's callback removes it.
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

__all__ = ["alive", "owned_by", "spawn", "spawned_here"]

# weakref -> None, for every greenlet spawned here and not yet collected.
_spawned: dict[weakref.ref[Greenlet], None] = {}
_ref = weakref.ref


def _forget(ref: weakref.ref[Greenlet]) -> None:
    # The greenlet was collected; its reference keeps the hash it had.
    _spawned.pop(ref, None)


class _Greenlet(Greenlet):  # type: ignore[misc]  # gevent's Greenlet is untyped (Any)
    """A gevent ``Greenlet`` that records no spawning stack and knows its ``owner``.

    ``owner`` is the `Lifecycle` of the component that spawned it, or None
    (see the module docstring). It is an instance attribute, not a slot: it
    goes in the ``__dict__`` gevent's Greenlet already has for ``_run`` and
    ``name``, with room to spare, where a slot would add 8 bytes.
    """

    __slots__ = ()
    spawning_stack_limit = 0


def spawn(name: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Greenlet:
    """Start ``func(*args, **kwargs)`` in a new greenlet called *name*, its ``owner`` None.

    A `Lifecycle` that spawns through here sets ``owner`` to itself.

    Never switches: the greenlet runs at the next switch.

    :param str name: shown by ``format_run_info``, e.g. ``"greenworks.dispatcher[3]"``.
    :return gevent.Greenlet: the started greenlet.
    """
    greenlet = _Greenlet(func, *args, **kwargs)
    greenlet.name = name
    greenlet.owner = None
    _spawned[_ref(greenlet, _forget)] = None
    greenlet.start()
    return greenlet


def spawned_here(greenlet: Any) -> bool:
    """Whether *greenlet* was spawned by :func:`spawn`. O(1); never switches."""
    return isinstance(greenlet, _Greenlet)


def _live() -> list[Any]:
    # list() copies the keys in C, so no callback can remove one mid-copy.
    greenlets = [ref() for ref in list(_spawned)]
    return [g for g in greenlets if g is not None and not g.dead]


def alive() -> list[Greenlet]:
    """Return the greenlets spawned by greenworks that have not finished yet, oldest first."""
    return _live()


def owned_by(owner: Any) -> list[Greenlet]:
    """Return the live greenlets spawned with ``owner`` *owner*; O(greenlets greenworks spawned)."""
    return [g for g in _live() if g.owner is owner]
