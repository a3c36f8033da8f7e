"""
What a JobRunner runs: `Job`, a function with an id, a schedule and its options.

``job(id, fn, schedule)`` builds a plain job; ``JobRunner.add_job``
and ``@runner.scheduled`` build one with the options APScheduler users expect
(arguments, ``max_instances``, ``misfire_grace_time``, ``coalesce``, ``jitter``,
``timeout``). A job whose function has a parameter called ``ctx`` is given a
`Context` when it runs (with its ``timeout`` as the deadline); others are
called with their own arguments only.
"""

import datetime
import functools
import inspect
from typing import Any

from zope.interface import implementer

from greenworks import _checks
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import IJob

__all__ = ["Job", "job"]


def _predicate(schedule: Any) -> Any:
    if schedule is None:
        return None
    is_run = getattr(schedule, "is_run", None)
    if callable(is_run):
        return is_run
    if callable(schedule):
        return schedule
    raise invalid_argument("schedule", schedule, "None, a callable(now) or an object with is_run(now)")


def _wants_ctx(fn: Any) -> bool:
    try:
        return "ctx" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


@implementer(IJob)
class Job:
    """Default implementation of `IJob`: a function with an id, a schedule and options.

    :param str id: the job's id (dedupe key, result key, claim key, greenlet name).
    :param fn: called as ``fn(*args, **kwargs)`` by ``run()`` (plus ``ctx=`` when
        it has a ``ctx`` parameter); its return value is the job's value.
    :param schedule: ``None`` (due on every tick), an `ISchedule` such as
        ``Every``, ``Cron``, ``Interval``, ``At`` (the runner sleeps until its
        ``next_after``), or any callable ``(now) -> bool`` / object with
        ``is_run(now)`` (asked on every tick).
    :keyword tuple args: positional arguments for *fn*.
    :keyword dict kwargs: keyword arguments for *fn*.
    :keyword int max_instances: runs of this job at once (``None``: the
        runner's rule, one with ``dedupe=True``, else no limit).
    :keyword float misfire_grace_time: seconds a run may start late; an older
        due time is skipped and reported (``None``: however late).
    :keyword bool coalesce: several missed due times run once (True) or each (False).
    :keyword float jitter: seconds; each run starts a random ``[0, jitter]`` late.
    :keyword float timeout: seconds a run may take: its ``ctx`` has that
        deadline, and a run that ignores it is interrupted a grace later
        (its error is a `DeadlineExceeded`).
    :raises InvalidArgument: naming the bad argument.
    """

    __slots__ = (
        "id",
        "fn",
        "schedule",
        "args",
        "kwargs",
        "max_instances",
        "misfire_grace_time",
        "coalesce",
        "jitter",
        "timeout",
        "_is_run",
        "_wants_ctx",
        "timed",
        "_call",
    )

    def __init__(
        self,
        id: str,
        fn: Any,
        schedule: Any = None,
        *,
        args: Any = (),
        kwargs: Any = None,
        max_instances: int | None = None,
        misfire_grace_time: float | None = None,
        coalesce: bool = True,
        jitter: float | None = None,
        timeout: float | None = None,
    ) -> None:
        _checks.name("id", id)
        if not callable(fn):
            raise invalid_argument("fn", fn, "a callable")
        if not isinstance(args, (tuple, list)):
            raise invalid_argument("args", args, "a tuple of positional arguments")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise invalid_argument("kwargs", kwargs, "a dict of keyword arguments or None")
        if not isinstance(coalesce, bool):
            raise invalid_argument("coalesce", coalesce, "a bool")
        self._is_run = _predicate(schedule)
        self.id = id
        self.fn = fn
        self.schedule = schedule
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.max_instances = _checks.count("max_instances", max_instances, minimum=1, none=True)
        self.misfire_grace_time = _checks.seconds("misfire_grace_time", misfire_grace_time, none=True)
        self.coalesce = coalesce
        self.jitter = _checks.seconds("jitter", jitter, none=True) or None
        self.timeout = _checks.seconds("timeout", timeout, none=True, positive=True)
        self._wants_ctx = _wants_ctx(fn)
        #: Whether a run needs a context of its own (a timeout, or a ``ctx`` parameter).
        self.timed = self.timeout is not None or self._wants_ctx
        # Runs call this: the bare function when there is nothing to add (the common, fast case).
        bare = not (self.args or self.kwargs)
        self._call = fn if bare else functools.partial(fn, *self.args, **self.kwargs)

    def get_id(self) -> str:
        return self.id

    def is_run(self, now: datetime.datetime) -> bool:
        return True if self._is_run is None else bool(self._is_run(now))

    def run(self, ctx: Any = None) -> Any:
        """Call the function with its arguments (and ``ctx=`` if it takes one)."""
        if self._wants_ctx:
            return self._call(ctx=ctx)
        return self._call()

    def describe(self) -> str:
        """The schedule as text, for snapshots."""
        schedule = self.schedule
        if schedule is None:
            return "every tick"
        describe = getattr(schedule, "describe", None)
        return describe() if callable(describe) else repr(schedule)

    def __repr__(self) -> str:
        return "<greenworks.jobs.Job %r schedule=%r>" % (self.id, self.schedule)


def job(id: str, fn: Any, schedule: Any = None) -> Job:
    """Return a :class:`Job`; ``job("report", send_report, Cron("0 8 * * *"))``."""
    return Job(id, fn, schedule)
