"""
Subsystem paths and trace ids for named workers (the seed's ``logutil.Start``).

Go carries a worker's name in its ``context.Context``; here the name travels
with the greenlet instead, so plain ``logging`` calls anywhere below a named
worker can find it without a context argument:

- Entering a named worker pushes ``(name, fresh trace id)`` onto the running
  greenlet's trace; leaving pops it. Every (re)start gets a new trace id.
- A greenlet without a trace of its own inherits the trace of the greenlet
  that spawned it (gevent's ``spawning_greenlet``), as a Go goroutine
  inherits its context, so workers started by ``run_all_workers`` inside a
  named worker extend their parent's path.
- :func:`current_trace` reads it; :class:`SubsystemFilter` copies it onto log
  records as ``%(subsystem)s`` and ``%(trace_id)s``.

The registry is a weak map from greenlet to an immutable tuple, so a finished
greenlet leaves nothing behind and readers never see a half-built trace.
"""

import collections
import logging
import secrets
import weakref
from typing import Any, Literal

from greenlet import getcurrent

__all__ = ["SubsystemFilter", "Trace", "current_subsystem", "current_trace"]

#: A greenlet's own frames: (subsystem name, trace id) pairs, outermost first.
_Frames = tuple[tuple[str, str], ...]

_traces: weakref.WeakKeyDictionary[Any, _Frames] = weakref.WeakKeyDictionary()
_MISSING = object()
_OWN_PREFIX = "greenworks.runutil["


class Trace(collections.namedtuple("Trace", "names ids")):
    """Where the running code sits: the named workers around it, outermost first.

    :ivar tuple names: the subsystem names, e.g. ``("workers/CommitFetcher", "Commits")``.
    :ivar tuple ids: one random 12-character id per name, new on every (re)start.
    """

    __slots__ = ()

    @property
    def subsystem(self) -> str:
        """The names joined as a path: ``"/workers/CommitFetcher/Commits"``."""
        return "/" + "/".join(self.names)

    @property
    def trace_id(self) -> str:
        """The ids joined with ``"-"``."""
        return "-".join(self.ids)


def _frames_of(greenlet: Any) -> _Frames:
    seen = 0
    while greenlet is not None and seen < 1000:
        frames = _traces.get(greenlet)
        if frames is not None:
            return frames
        parent = getattr(greenlet, "spawning_greenlet", None)
        greenlet = parent() if parent is not None else None
        seen += 1
    return ()


def current_trace() -> Trace | None:
    """Return the :class:`Trace` of the running greenlet, or None outside any named worker."""
    frames = _frames_of(getcurrent())
    if not frames:
        return None
    return Trace(tuple(name for name, _ in frames), tuple(id_ for _, id_ in frames))


def current_subsystem() -> str:
    """Return the running greenlet's subsystem path (``"/a/b"``), or ``""`` outside any named worker."""
    frames = _frames_of(getcurrent())
    return "/" + "/".join(name for name, _ in frames) if frames else ""


class SubsystemFilter(logging.Filter):
    """A logging filter that adds ``subsystem`` and ``trace_id`` to every record.

    Attach it to a handler and use ``%(subsystem)s`` / ``%(trace_id)s`` in the
    format; both are ``""`` outside named workers. It never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        frames = _frames_of(getcurrent())
        record.subsystem = "/" + "/".join(name for name, _ in frames) if frames else ""
        record.trace_id = "-".join(id_ for _, id_ in frames)
        return True


class enter:
    """Context manager: run the body inside subsystem *name* with a fresh trace id.

    Renames the running greenlet while inside if it is one of runutil's own
    (``greenworks.runutil[...]``), so ``gevent.util.format_run_info()`` shows
    the full path; other greenlets keep their names.
    """

    __slots__ = ("_name", "_greenlet", "_saved", "_saved_name")

    def __init__(self, name: str) -> None:
        self._name = name

    def __enter__(self) -> Trace:
        greenlet = self._greenlet = getcurrent()
        self._saved: _Frames | object = _traces.get(greenlet, _MISSING)
        frames = (*_frames_of(greenlet), (self._name, secrets.token_hex(6)))
        _traces[greenlet] = frames
        self._saved_name: str | None = None
        name = getattr(greenlet, "name", None)
        if isinstance(name, str) and name.startswith(_OWN_PREFIX):
            self._saved_name = name
            greenlet.name = "%s/%s]" % (_OWN_PREFIX, "/".join(n for n, _ in frames))
        return Trace(tuple(n for n, _ in frames), tuple(i for _, i in frames))

    def __exit__(self, *exc_info: object) -> Literal[False]:
        greenlet = self._greenlet
        if self._saved is _MISSING:
            _traces.pop(greenlet, None)
        else:
            assert isinstance(self._saved, tuple)  # what __enter__ saved, when not _MISSING
            _traces[greenlet] = self._saved
        if self._saved_name is not None:
            greenlet.name = self._saved_name
        return False
