"""
What greenworks components tell the world: events published with ``zope.event``.

gevent already depends on ``zope.event`` and publishes its own events the
same way (`gevent.events`), so one subscriber list serves both::

    import zope.event
    from greenworks.events import JobFinished

    def on_event(event):
        if isinstance(event, JobFinished) and event.error is not None:
            alert(event.job_id, event.error)

    zope.event.subscribers.append(on_event)

Every event has ``component`` (the object), ``name`` (its name) and ``at``
(the component's clock's wall time, aware UTC); each kind adds the fields its
interface in `greenworks.interfaces` declares.

How it behaves:

- An event is built only when somebody subscribed: with an empty
  ``zope.event.subscribers`` emitting costs one list lookup.
- Subscribers run synchronously, on the greenlet that emitted the event (a
  worker, a tick), in subscription order. They must not block: a subscriber
  that waits holds up the component that emitted the event.
- A subscriber that raises is logged once (per subscriber) and skipped; the
  other subscribers still get the event and the component carries on.
"""

import datetime
import logging
import weakref
from typing import Any

import zope.event
from zope.interface import implementer

from greenworks import interfaces as _i

__all__ = [
    "ComponentStarted",
    "ComponentStopped",
    "GreenworksEvent",
    "HubBlocked",
    "JobFinished",
    "JobSkipped",
    "JobStarted",
    "LeadershipAcquired",
    "LeadershipLost",
    "PoolScaled",
    "TaskFailed",
    "TaskGaveUp",
    "TaskRejected",
    "TaskRestarted",
    "TaskTimedOut",
    "TicksMissed",
    "WorkerExited",
    "WorkerStarted",
    "notify",
    "subscribed",
]

logger = logging.getLogger(__name__)

_UTC = datetime.timezone.utc


@implementer(_i.IGreenworksEvent)
class GreenworksEvent:
    """The base of every greenworks event: ``component``, ``name``, ``at``, then the kind's fields.

    Built positionally, in the order of ``fields``; events are plain
    records and compare by identity.
    """

    __slots__ = ("component", "name", "at")
    #: The kind's own fields, after component, name and at.
    fields: tuple[str, ...] = ()

    def __init__(self, component: Any, name: Any, at: datetime.datetime, *values: Any) -> None:
        if len(values) != len(self.fields):
            raise TypeError(
                "%s takes %d field(s) after component, name, at: %s"
                % (type(self).__name__, len(self.fields), ", ".join(self.fields) or "none")
            )
        self.component = component
        self.name = name
        self.at = at
        for field, value in zip(self.fields, values, strict=True):
            setattr(self, field, value)

    def __repr__(self) -> str:
        parts = ["name=%r" % (self.name,)]
        parts.extend("%s=%r" % (field, getattr(self, field)) for field in self.fields)
        return "<%s %s>" % (type(self).__name__, " ".join(parts))


@implementer(_i.IComponentStarted)
class ComponentStarted(GreenworksEvent):
    """Default implementation of `IComponentStarted`."""

    __slots__ = ()


@implementer(_i.IComponentStopped)
class ComponentStopped(GreenworksEvent):
    """Default implementation of `IComponentStopped`."""

    __slots__ = fields = ("clean",)
    clean: bool


@implementer(_i.IPoolScaled)
class PoolScaled(GreenworksEvent):
    """Default implementation of `IPoolScaled`."""

    __slots__ = fields = ("before", "after", "reason")
    before: int
    after: int
    reason: str


@implementer(_i.ITaskFailed)
class TaskFailed(GreenworksEvent):
    """Default implementation of `ITaskFailed`."""

    __slots__ = fields = ("task", "error")
    task: Any
    error: BaseException


@implementer(_i.ITaskTimedOut)
class TaskTimedOut(GreenworksEvent):
    """Default implementation of `ITaskTimedOut`."""

    __slots__ = fields = ("task", "seconds")
    task: Any
    seconds: float


@implementer(_i.ITaskRejected)
class TaskRejected(GreenworksEvent):
    """Default implementation of `ITaskRejected`."""

    __slots__ = fields = ("task",)
    task: Any


@implementer(_i.IWorkerStarted)
class WorkerStarted(GreenworksEvent):
    """Default implementation of `IWorkerStarted`."""

    __slots__ = fields = ("task",)
    task: Any


@implementer(_i.IWorkerExited)
class WorkerExited(GreenworksEvent):
    """Default implementation of `IWorkerExited`."""

    __slots__ = fields = ("task", "error")
    task: Any
    error: BaseException | None


@implementer(_i.ITaskRestarted)
class TaskRestarted(GreenworksEvent):
    """Default implementation of `ITaskRestarted`."""

    __slots__ = fields = ("task_name", "restarts", "error")
    task_name: str
    restarts: int
    error: BaseException


@implementer(_i.ITaskGaveUp)
class TaskGaveUp(GreenworksEvent):
    """Default implementation of `ITaskGaveUp`."""

    __slots__ = fields = ("task_name", "restarts", "error")
    task_name: str
    restarts: int
    error: BaseException


@implementer(_i.IJobStarted)
class JobStarted(GreenworksEvent):
    """Default implementation of `IJobStarted`."""

    __slots__ = fields = ("job_id", "tick")
    job_id: str
    tick: datetime.datetime


@implementer(_i.IJobFinished)
class JobFinished(GreenworksEvent):
    """Default implementation of `IJobFinished`."""

    __slots__ = fields = ("job_id", "tick", "value", "error", "duration", "lateness")
    job_id: str
    tick: datetime.datetime
    value: Any
    error: BaseException | None
    duration: float
    lateness: float


@implementer(_i.IJobSkipped)
class JobSkipped(GreenworksEvent):
    """Default implementation of `IJobSkipped`."""

    __slots__ = fields = ("job_id", "tick", "reason")
    job_id: str
    tick: datetime.datetime
    reason: str


@implementer(_i.ITicksMissed)
class TicksMissed(GreenworksEvent):
    """Default implementation of `ITicksMissed`."""

    __slots__ = fields = ("count",)
    count: int


@implementer(_i.ILeadershipAcquired)
class LeadershipAcquired(GreenworksEvent):
    """Default implementation of `ILeadershipAcquired`."""

    __slots__ = ()


@implementer(_i.ILeadershipLost)
class LeadershipLost(GreenworksEvent):
    """Default implementation of `ILeadershipLost`."""

    __slots__ = fields = ("reason",)
    reason: str


@implementer(_i.IHubBlocked)
class HubBlocked(GreenworksEvent):
    """Default implementation of `IHubBlocked`."""

    __slots__ = fields = ("seconds", "greenlet_name", "component_name", "task_or_job", "stack")
    seconds: float
    greenlet_name: str
    component_name: str | None
    task_or_job: str | None
    stack: str


# -- streams ------------------------------------------------------------------


@implementer(_i.IMessageAcked)
class MessageAcked(GreenworksEvent):
    """Default implementation of `IMessageAcked`."""

    __slots__ = fields = ("message_id", "task", "delivery_count")
    message_id: str
    task: str
    delivery_count: int


@implementer(_i.IMessageFailed)
class MessageFailed(GreenworksEvent):
    """Default implementation of `IMessageFailed`."""

    __slots__ = fields = ("message_id", "task", "delivery_count", "error", "retry_in")
    message_id: str
    task: str
    delivery_count: int
    error: BaseException
    retry_in: float | None


@implementer(_i.IMessageDeadLettered)
class MessageDeadLettered(GreenworksEvent):
    """Default implementation of `IMessageDeadLettered`."""

    __slots__ = fields = ("message_id", "task", "delivery_count", "error", "dead_letter_id")
    message_id: str
    task: str
    delivery_count: int
    error: str
    dead_letter_id: str


@implementer(_i.IMessagesReclaimed)
class MessagesReclaimed(GreenworksEvent):
    """Default implementation of `IMessagesReclaimed`."""

    __slots__ = fields = ("message_ids",)
    message_ids: tuple[str, ...]


@implementer(_i.IMessagesLost)
class MessagesLost(GreenworksEvent):
    """Default implementation of `IMessagesLost`."""

    __slots__ = fields = ("message_ids",)
    message_ids: tuple[str, ...]


@implementer(_i.IStreamDisconnected)
class StreamDisconnected(GreenworksEvent):
    """Default implementation of `IStreamDisconnected`."""

    __slots__ = fields = ("error",)
    error: str


@implementer(_i.IStreamReconnected)
class StreamReconnected(GreenworksEvent):
    """Default implementation of `IStreamReconnected`."""

    __slots__ = fields = ("seconds",)
    seconds: float


__all__ += [
    "MessageAcked",
    "MessageDeadLettered",
    "MessageFailed",
    "MessagesLost",
    "MessagesReclaimed",
    "StreamDisconnected",
    "StreamReconnected",
]
# -- end streams --------------------------------------------------------------


# -- publishing ---------------------------------------------------------------

# Subscribers that raised once: logged then, and again only if they are
# replaced. Weak, so a subscriber removed from the list is forgotten.
_reported: "weakref.WeakSet[Any]" = weakref.WeakSet()
_reported_ids: set[int] = set()


def subscribed() -> bool:
    """Whether anybody listens: the one check hot paths make before building an event."""
    return bool(zope.event.subscribers)


def notify(event: GreenworksEvent) -> None:
    """Hand *event* to every subscriber in ``zope.event.subscribers``, in order.

    Runs the subscribers on the calling greenlet. A subscriber that raises is
    logged (once per subscriber) and skipped; this never raises for that.
    """
    for subscriber in list(zope.event.subscribers):
        try:
            subscriber(event)
        except Exception:
            _report(subscriber, event)


def _report(subscriber: Any, event: GreenworksEvent) -> None:
    try:
        if subscriber in _reported:
            return
        _reported.add(subscriber)
    except TypeError:
        # Not weak-referenceable (a bound method, a builtin): remember its id.
        key = id(subscriber)
        if key in _reported_ids:
            return
        _reported_ids.add(key)
    logger.exception(
        "event subscriber %r raised on %r; it stays subscribed, later errors are not logged",
        subscriber,
        event,
    )
