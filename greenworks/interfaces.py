"""
Every contract in greenworks: the spec of record.

Each component's implementation says ``@implementer(IThing)`` and its tests
check it with ``verifyClass`` and ``verifyObject``. Where the seeds use the
same word for different things (a *task* is a hashable identity for the
Runner, a callable for the Dispatcher, a named ``execute(ctx)`` for the
TaskManager), the interfaces here keep them apart by name.

Time is in seconds (floats) everywhere. "Blocks" means the calling greenlet
may switch; nothing here blocks the hub.
"""

from zope.interface import Attribute, Interface

__all__ = [
    "IBackoff",
    "IClock",
    "IContext",
    "IDispatchTask",
    "IDispatcher",
    "IJob",
    "IJobRunner",
    "ILeaderLock",
    "IManagedTask",
    "IRestartableTask",
    "IRunOnce",
    "IRunner",
    "ITask",
    "ITaskManager",
    "ITaskStack",
    "ITaskWithProgress",
    "ITimerHandle",
    "IWorker",
    "IWorkerConfigurer",
]


# -- time and cancellation ----------------------------------------------------


class ITimerHandle(Interface):
    """A callback scheduled with `IClock.call_later`."""

    active = Attribute("bool, read-only: True until the callback ran or was cancelled.")

    def cancel():
        """Stop the callback from running. Idempotent; never blocks."""


class IClock(Interface):
    """The only source of time and sleep in greenworks.

    Every component takes ``clock=None`` (meaning the real `greenworks.clock.Clock`)
    so that tests can pass a `greenworks.testing.FakeClock`.
    """

    def now(tz=None):
        """Return the wall-clock time as an aware ``datetime``.

        :param tz: a ``tzinfo``; ``None`` means the clock's default zone (the
            machine's local zone for the real clock, UTC for a FakeClock).
        """

    def time():
        """Return the wall-clock time as a POSIX timestamp (float seconds)."""

    def monotonic():
        """Return a monotonic time in seconds, for intervals and deadlines."""

    def sleep(seconds):
        """Block the calling greenlet for *seconds* (``<= 0``: just yield)."""

    def sleep_until(deadline):
        """Block the calling greenlet until ``monotonic() >= deadline``."""

    def wait(event, timeout=None):
        """Block until *event* (a gevent ``Event``) is set or *timeout* passes.

        Time is measured on this clock. ``timeout <= 0`` polls without blocking.

        :return bool: whether the event is set.
        """

    def call_later(seconds, callback, *args):
        """Run ``callback(*args)`` once *seconds* from now, without a greenlet.

        The callback runs in the hub (real clock) or inside ``advance()``
        (FakeClock): it must not block.

        :return ITimerHandle: to cancel it.
        """


class IContext(Interface):
    """Cancellation and a deadline flowing down a tree (Go's ``context.Context``).

    States: *live* (``err is None``) -> *done* (``err`` is a `Canceled` or
    `DeadlineExceeded`). The transition happens once; it is caused by
    ``cancel()``, by the deadline passing, or by the parent becoming done, in
    which case the child takes the parent's ``err``. Cancelling a child never
    affects its parent.
    """

    done = Attribute("gevent.event.Event, read-only: set once the context is done.")
    err = Attribute("None while live; afterwards the same Canceled or DeadlineExceeded instance, read-only.")
    deadline = Attribute("float or None, read-only: monotonic seconds on ``clock`` when it expires.")
    clock = Attribute("IClock, read-only: the clock its deadline and waits are measured on.")

    def cancel():
        """Cancel this context and every descendant. Idempotent; O(descendants); never blocks."""

    def sleep(seconds):
        """Block up to *seconds*; return False at once if the context is or becomes done.

        :return bool: True if the whole time passed with the context live.
        """

    def wait(timeout=None):
        """Block until the context is done or *timeout* passes.

        :return bool: whether the context is done.
        """

    def raise_if_done():
        """Raise a fresh copy of ``err`` if the context is done; otherwise return None."""

    def remaining():
        """Seconds before the deadline (``>= 0``), or None without a deadline."""


# -- seed 000: Runner ---------------------------------------------------------


class ITask(Interface):
    """A desired unit of work for a `IRunner`: a hashable, immutable identity.

    Identity is Python's ``__hash__`` and ``__eq__`` (``__eq__`` is only
    consulted for equal hashes); a frozen dataclass is the usual task. Tasks
    must not change while the runner tracks them.
    """

    def __hash__():
        """A stable hash of the task's identity."""

    def __eq__(other):
        """Whether *other* describes the same work."""


class IWorker(Interface):
    """Long-running business logic, shared by the Runner and runutil.

    ``run`` is called exactly once per worker object by the Runner.
    """

    def run(ctx):
        """Work until *ctx* is done or a fatal error occurs.

        Returning (or raising) before ``ctx`` is done means the worker exited
        by itself. An exception is the worker's error: it is caught, logged
        and reported by whoever ran the worker, never allowed to kill the hub.

        :param IContext ctx: cancelled when the worker should stop.
        """


class IRunner(Interface):
    """Keeps exactly one worker greenlet running per unique desired task.

    States: *open* -> (``stop()``) -> *closed*. While open, ``apply_tasks``
    reconciles; once closed it raises `RunnerClosedError`.
    """

    def apply_tasks(tasks, ctx=None, timeout=None):
        """Make the set of running workers match *tasks*.

        Starts a worker for each new task, cancels the workers of tasks no
        longer listed and blocks until they exited. Concurrent calls are
        serialised.

        :param tasks: iterable of hashable `ITask` values; equal ones collapse
            to the first.
        :param ctx: if it is done (or *timeout* passes) the reconciliation is
            still completed, but the call returns at once by raising.
        :raises RunnerClosedError: after ``stop()``.
        :raises Canceled: *ctx* was cancelled before stale workers exited.
        :raises DeadlineExceeded: *ctx*'s deadline or *timeout* passed first.
        """

    def tasks():
        """Return the tracked tasks (including ones whose worker already exited)."""

    def workers():
        """Return the tracked workers, in the same order as ``tasks()``."""

    def status():
        """Return a snapshot per tracked task: task, state, started_at, exited_at, error."""

    def stop():
        """Cancel every worker and block until each ``run`` returned. Idempotent."""


# -- seed 001: Dispatcher -----------------------------------------------------


class IDispatchTask(Interface):
    """A unit of work for a `IDispatcher` (any zero-argument callable also works)."""

    def execute():
        """Do the work. An exception is counted and logged; it never kills the worker."""


class ITaskStack(Interface):
    """A LIFO stack of dispatcher tasks."""

    def size():
        """Return the number of tasks on the stack."""

    def push(task):
        """Put *task* on top of the stack."""

    def pop():
        """Remove and return the top task.

        :raises EmptyStackError: if the stack is empty (an IndexError).
        """

    def peek():
        """Return the top task without removing it.

        :raises EmptyStackError: if the stack is empty (an IndexError).
        """


class IDispatcher(Interface):
    """An elastic pool of worker greenlets fed from a bounded buffer.

    States (`greenworks.dispatcher.Status`): STOPPED -> ``run()`` -> RUNNING
    -> ``quit(drain=False)`` -> STOPPING -> STOPPED, or ``quit(drain=True)``
    -> DRAINING -> STOPPED. ``run()`` after ``quit()`` starts again with the
    backlog that was kept.
    """

    status = Attribute("Status, read-only: the current state.")
    worker_count = Attribute("int, read-only: worker greenlets alive now.")

    def run():
        """Start ``min_workers`` workers and begin executing. A no-op unless STOPPED."""

    def dispatch(task, block=False, timeout=None):
        """Accept *task* for execution; never blocks unless *block* is true.

        :return bool: True if it went into the buffer; False if the buffer was
            full (with the "stack" or "queue" overflow policy it still runs
            later; with "reject" it was not kept).
        """

    def submit(fn, *args, **kwargs):
        """Dispatch ``fn(*args, **kwargs)`` and return a gevent ``AsyncResult`` of it."""

    def quit(drain=False):
        """Stop the workers; with *drain* run every buffered task first. Blocks."""

    def resize(min_workers=None, max_workers=None):
        """Change the pool's bounds; the pool moves into them."""

    def stats():
        """Return counters and gauges as a dict (workers, busy, idle, buffered, ...)."""


# -- seed 002: TaskManager ----------------------------------------------------


class IManagedTask(Interface):
    """A named unit of work for a `ITaskManager`."""

    def name():
        """Return the task's unique name (a str)."""

    def execute(ctx):
        """Do the work; return on success, raise on failure.

        :param IContext ctx: the manager's context, cancelled by ``stop()``.
        """


class IRestartableTask(IManagedTask):
    """A managed task that may be restarted after it failed."""

    def restart(ctx, error):
        """Decide whether to run again after *error*. Runs on the worker greenlet.

        :return bool: True to queue the task again.
        """


class ITaskWithProgress(IManagedTask):
    """A managed task that reports its progress."""

    def progress():
        """Return progress as a float (conventionally 0..100); an exception reads as 0."""

    def description():
        """Return a short human description; an exception reads as ""."""


class ITaskManager(Interface):
    """Named unique tasks on an elastic pool of workers, with supervision.

    Task states: *not assigned* (queued) -> *running* -> removed on success or
    final failure, or -> *restarted* -> *not assigned* again.
    Manager states: *running* -> (``stop()``) -> *stopped*.
    """

    def go(task):
        """Queue *task*; return a gevent ``Event`` set once a worker picked it up.

        :raises TaskAlreadyExistsError: a task with that name is pending or running.
        :raises ManagerStoppedError: after ``stop()``.
        """

    def go_func(key, fn):
        """Queue ``fn(ctx)`` as a task named *key*; same contract as ``go``."""

    def status():
        """Return ``{worker_id: WorkerInfo}`` for every live worker."""

    def task_status():
        """Return ``{name: TaskStatus}`` for every pending or running task."""

    def stop(timeout=None):
        """Cancel every running task, wait for the workers to exit.

        :raises StopTimeoutError: if workers outlive *timeout*.
        """


# -- seed 003: JobRunner ------------------------------------------------------


class IJob(Interface):
    """A periodic job for a `IJobRunner` (the seed's ``JobInterface``)."""

    def get_id():
        """Return the job's id (a str), used for dedupe and results."""

    def is_run(now):
        """Return whether the job is due at *now* (an aware datetime, cut to the minute)."""

    def run():
        """Do the work and return a value; an exception becomes a `PanicError`."""


class IJobRunner(Interface):
    """Runs the due jobs on each wall-clock tick, under a global concurrency limit.

    States: *running* -> ``stop()`` -> *stopped* (no new ticks, no new batches)
    -> ``wait()`` -> *finished* (in-flight batches done, results closed).
    """

    def push(batch):
        """Queue a batch of jobs for the next tick; blocks while the FIFO is full.

        :return bool: False after ``stop()``.
        """

    def push_and_await(batch):
        """Run a batch now, bypassing the tick; return an ``AsyncResult`` of its Result."""

    def set_jobs(jobs):
        """Replace the standing set of jobs evaluated on every tick."""

    def stats():
        """Return a `Stats` snapshot."""

    def in_flight_ids():
        """Return the ids of jobs in flight (only tracked with dedupe)."""

    def stop():
        """End the tick and ingest greenlets; jobs waiting for a slot are not started. Idempotent."""

    def wait():
        """Block until in-flight batches finished, then close the results stream."""

    def stop_and_wait():
        """``stop()`` then ``wait()``."""


# -- seed 004: runutil --------------------------------------------------------


class IBackoff(Interface):
    """A pure strategy for the wait between attempts."""

    def duration(attempt):
        """Return the seconds to wait before *attempt* (attempt 0 is always 0).

        :raises ValueError: for a negative attempt.
        """


class IRunOnce(Interface):
    """A job that runs to completion once (runutil's ``Job``)."""

    def run_once(ctx):
        """Do the work once; raise on failure."""


class IWorkerConfigurer(Interface):
    """An object that describes its own workers (runutil's ``WorkerConfiger``)."""

    def workers():
        """Return a list of `IWorker` (``None`` entries are skipped)."""


# -- coordination -------------------------------------------------------------


class ILeaderLock(Interface):
    """A lease that at most one process holds at a time.

    States: *free* -> ``acquire()`` -> *held* -> ``release()`` or the lease
    expiring (ttl without ``renew()``) or the holder dying -> *free*.
    No method blocks the hub for longer than one round trip to the backend.
    """

    is_held = Attribute("bool, read-only: whether this instance holds the lease now.")
    holder = Attribute("str, read-only: this instance's id, e.g. 'host:pid:nonce'.")

    def acquire(ttl):
        """Try once to take the lease for *ttl* seconds; never waits for it.

        :return bool: True if this instance holds the lease afterwards.
        """

    def renew():
        """Extend a held lease by its ttl.

        :return bool: False if the lease was lost (expired or taken over).
        """

    def release():
        """Give the lease up if held; never deletes another holder's lease."""

    def claim(key, ttl):
        """Take a one-off claim on *key* (e.g. ``job-id@tick``) for *ttl* seconds.

        :return bool: True for exactly one caller per key while the claim lives.
        """
