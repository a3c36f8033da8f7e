"""
The recent happenings the status page shows: a ring buffer fed by a zope.event subscriber.

Kept apart from :mod:`greenworks.status` (which re-exports it) so that module
holds only snapshots and their page. The page shows what the components told
(`greenworks.events`), as they told it: nothing here polls.
"""

from __future__ import annotations

import collections
from typing import Any

import zope.event

from greenworks import _checks
from greenworks.events import GreenworksEvent

__all__ = ["DEFAULT_EVENTS", "EventLog", "record_events", "recording", "stop_recording"]

#: Events the process-wide log keeps (the oldest go first).
DEFAULT_EVENTS = 200
#: Characters of one field's text kept in an entry.
_FIELD_TEXT = 80

_log: EventLog | None = None


def _short(value: Any) -> str:
    if isinstance(value, BaseException):
        text = "%s: %s" % (type(value).__name__, value)
    elif isinstance(value, float):
        text = "%.3g" % value
    elif hasattr(value, "isoformat"):
        text = value.isoformat()
    else:
        text = str(value) if isinstance(value, (str, int)) else repr(value)
    return text if len(text) <= _FIELD_TEXT else text[: _FIELD_TEXT - 3] + "..."


class EventLog:
    """The last *maxlen* greenworks events, newest first, as JSON-ready dicts.

    Call it with an event (it is a zope.event subscriber); it keeps
    ``{"at", "event", "name", "detail"}`` and no reference to the component.
    Never blocks; appending is O(1).

    :param int maxlen: entries kept (>= 1).
    :raises InvalidArgument: *maxlen* is not an int >= 1.
    """

    def __init__(self, maxlen: int = DEFAULT_EVENTS) -> None:
        self.maxlen = _checks.count("maxlen", maxlen, minimum=1)
        self._entries: collections.deque[dict[str, Any]] = collections.deque(maxlen=self.maxlen)

    def __call__(self, event: Any) -> None:
        if not isinstance(event, GreenworksEvent):
            return
        at = event.at
        self._entries.append(
            {
                "at": at.isoformat() if hasattr(at, "isoformat") else None,
                "event": type(event).__name__,
                "name": None if event.name is None else str(event.name),
                # The stack of a HubBlocked is the hub watch's card's, not a line's.
                "detail": ", ".join(
                    "%s=%s" % (field, _short(getattr(event, field)))
                    for field in event.fields
                    if field != "stack"
                ),
            }
        )

    def entries(self) -> list[dict[str, Any]]:
        """Return the entries, newest first (a new list)."""
        return list(reversed(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


def record_events(maxlen: int = DEFAULT_EVENTS) -> EventLog:
    """Start (or return) the process-wide `EventLog`, subscribed to zope.event. Idempotent.

    While it records, every greenworks event is built (see
    `greenworks.events`: free only when nobody subscribes).
    """
    global _log
    if _log is None:
        _log = EventLog(maxlen)
    if _log not in zope.event.subscribers:
        zope.event.subscribers.append(_log)
    return _log


def recording() -> EventLog | None:
    """Return the process-wide log if it records, else None."""
    return _log if _log is not None and _log in zope.event.subscribers else None


def stop_recording() -> None:
    """Unsubscribe and forget the process-wide log; idempotent."""
    global _log
    if _log is not None and _log in zope.event.subscribers:
        zope.event.subscribers.remove(_log)
    _log = None
