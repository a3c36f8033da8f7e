"""
Every contract in greenworks: the spec of record.

Each component's implementation says ``@implementer(IThing)`` and its tests
check it with ``verifyClass`` and ``verifyObject``. Where components use the
same word for different things (a *task* is a hashable identity for the
Runner, a callable for the Dispatcher, a named ``execute(ctx)`` for the
TaskManager), the interfaces here keep them apart by name.

Time is in seconds (floats) everywhere. "Blocks" means the calling greenlet
may switch; nothing here blocks the hub.
"""

from zope.interface import Attribute, Interface

__all__ = [
    "IBackoff",
    "IChild",
    "IClock",
    "IClusterRunner",
    "IComponent",
    "IComponentStarted",
    "IComponentStopped",
    "IContext",
    "IDispatchTask",
    "IDispatcher",
    "IFencedLock",
    "IGreenExecutor",
    "IGreenworksEvent",
    "IHubBlocked",
    "IJob",
    "IJobFinished",
    "IJobRunner",
    "IJobSkipped",
    "IJobStarted",
    "IJobStore",
    "ILeaderLock",
    "ILeadershipAcquired",
    "ILeadershipLost",
    "IManagedTask",
    "IMapping",
    "IMembership",
    "IPoolScaled",
    "IRestartableTask",
    "IRunOnce",
    "IRunner",
    "ISchedule",
    "IStatusSource",
    "ISupervisor",
    "ITask",
    "ITaskFailed",
    "ITaskGaveUp",
    "ITaskGroup",
    "ITaskManager",
    "ITaskRejected",
    "ITaskRestarted",
    "ITaskStack",
    "ITaskStatus",
    "ITaskTimedOut",
    "ITaskWithProgress",
    "ITicksMissed",
    "ITimerHandle",
    "IWorker",
    "IWorkerConfigurer",
    "IWorkerExited",
    "IWorkerStarted",
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


# -- status and lifecycle -----------------------------------------------------


class IStatusSource(Interface):
    """A component that `greenworks.status` can show (Runner, Dispatcher, TaskManager, JobRunner)."""

    def snapshot():
        """Return the component's state now as a dict of plain JSON types.

        The ``"component"`` key says what it is (``"runner"``, ``"dispatcher"``,
        ``"taskmanager"``, ``"jobs"``) and ``"name"`` which one. Never blocks;
        safe to call from any greenlet at any time, before ``run()`` and after
        ``stop()`` too.
        """


class IComponent(IStatusSource):
    """A long-running greenworks component: one lifecycle, the same for all of them.

    States (`greenworks.State`): *new* -> ``start()`` -> *running* ->
    ``stop()`` -> *stopping* (the Dispatcher may be *draining* first) ->
    *stopped*. Runner, TaskManager and JobRunner are *running* from
    construction (they start in their constructor); a Dispatcher is
    *new* until ``start()``/``run()`` and may be started again after it
    stopped. Every greenlet a component spawns is named ``greenworks.<...>``
    and tracked, so that after ``stop()`` none of them is left.

    Used as a context manager, ``with component:`` starts it and stops it on
    the way out, whatever happened inside the block.
    """

    name = Attribute("str, read-only: the component's name (greenlet names, logs, snapshot()).")
    state = Attribute("greenworks.State, read-only: where the component is in its lifecycle.")

    def start():
        """Start the component if it is not running; idempotent. Never blocks.

        :return: the component itself, so ``c = Dispatcher(...).start()`` reads well.
        """

    def stop(timeout=None):
        """Stop the component and block until everything it spawned has ended.

        Work in flight is asked to stop (contexts cancelled). What has not
        ended *timeout* seconds later (on the component's clock; ``None``:
        each component's documented default) is killed with ``GreenletExit``.
        Idempotent; a concurrent or later call waits for the same stop.

        :return bool: True if everything ended in time; False if stragglers
            had to be killed. Never raises for that.
        :raises ReentrantStopError: called from one of the component's own
            greenlets, which would wait for itself.
        """

    def __enter__():
        """``start()``, then return the component."""

    def __exit__(exc_type, exc_value, traceback):
        """``stop()``; never suppresses the exception of the block."""


# -- Runner --------------------------------------------------------------------


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


class IRunner(IComponent):
    """Keeps exactly one worker greenlet running per unique desired task.

    Runner states: *open* -> (``stop()``) -> *closed*. While open,
    ``apply_tasks`` reconciles; once closed it raises `RunnerClosedError`.

    Worker states (`greenworks.runner.WorkerState`): *starting* -> *running*
    -> *stopping* (context cancelled, ``run`` not returned yet) -> *exited*
    (``run`` returned), *failed* (``new_worker`` or ``run`` raised) or
    *killed* (``GreenletExit``, e.g. after ``stop_timeout``). A worker of a
    task that was re-added while its previous worker is still *stopping*
    stays *starting* until that one ended: one task never runs twice at once.
    """

    name = Attribute("str, read-only: the runner's name (greenlet names, logs, snapshot()).")
    closed = Attribute("bool, read-only: True once ``stop()`` was called.")

    def apply_tasks(tasks, ctx=None, timeout=None):
        """Make the set of running workers match *tasks*.

        Starts a worker for each new task (``new_worker(task)`` is called
        synchronously, once per new task), cancels the workers of tasks no
        longer listed and blocks until they exited. Tasks already tracked keep
        their worker and their original task object. Concurrent calls are
        serialised. Costs one ``hash()`` and at most one ``==`` per listed
        task, plus work proportional to the change.

        :param tasks: iterable of hashable `ITask` values; equal ones collapse
            to the first.
        :param ctx: an `IContext` or None. If it is done (or *timeout* passes)
            the reconciliation is still completed, but the call stops waiting
            for stale workers and raises. If *ctx* is done when the call
            returns, its error is raised.
        :param float timeout: the most seconds to wait for stale workers.
        :raises RunnerClosedError: after ``stop()``; nothing is started.
        :raises Canceled: *ctx* was cancelled.
        :raises DeadlineExceeded: *ctx*'s deadline or *timeout* passed first.
        :raises InvalidArgument: a task is unhashable or an argument is bad.
        """

    def tasks():
        """Return the desired tasks (including ones whose worker already exited). Never blocks."""

    def workers():
        """Return the tracked workers, in the same order as ``tasks()``. Never blocks."""

    def status():
        """Return a snapshot per tracked worker: task, worker, state, started_at, exited_at, error.

        Desired tasks first (``tasks()`` order), then workers still exiting.
        Never blocks.
        """

    def snapshot():
        """Return the state as JSON-serialisable plain data (``{"component": "runner", ...}``)."""

    def stop():
        """Cancel every worker and block until each greenlet ended. Idempotent.

        Workers ignoring cancellation for ``stop_timeout`` are killed.
        """


# -- Dispatcher ----------------------------------------------------------------


class IDispatchTask(Interface):
    """A unit of work for a `IDispatcher` (any zero-argument callable also works).

    An object with a callable ``execute`` is run through it, even if the
    object itself is callable too.
    """

    def execute():
        """Do the work; the return value is ignored.

        An exception is counted as ``failed`` and logged once; a
        ``gevent.Timeout`` thrown by the watchdog is counted as ``timed_out``.
        Neither kills the worker. ``GreenletExit``, ``KeyboardInterrupt`` and
        ``SystemExit`` are never reported as task failures: they end the worker.
        """


class ITaskStack(Interface):
    """A LIFO stack of dispatcher tasks (the "stack" overflow). Nothing here blocks."""

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


class IDispatcher(IComponent):
    """An elastic pool of worker greenlets fed from a bounded buffer.

    States (`greenworks.State`): NEW -> ``start()`` -> RUNNING ->
    ``stop(drain=True)`` (the default) -> DRAINING -> STOPPING -> STOPPED,
    or ``stop(drain=False)``/``quit()`` -> STOPPING -> STOPPED. ``start()``
    after a stop starts again with the backlog that was kept. Tasks may be
    accepted in every state (a warning says so once when the pool is not
    running); they run while RUNNING or DRAINING. The deprecated ``status``
    gives the same states as numbers (STOPPED 0, STOPPING 1, RUNNING 2,
    DRAINING 3).

    Ordering: buffered tasks start in dispatch order; overflowed tasks move
    into the buffer as room frees (LIFO for the "stack" policy, FIFO for
    "queue"). No task is ever run twice or dropped, except that the "reject"
    policy does not keep a task that found the buffer full (and says so).
    """

    status = Attribute(
        "Status, read-only, deprecated: ``state`` as the numbered `greenworks.dispatcher.Status`."
    )
    name = Attribute("str, read-only: names the greenlets (``greenworks.<name>[3]``); default 'dispatcher'.")
    worker_count = Attribute("int, read-only: worker greenlets alive now (including ones about to leave).")
    min_workers = Attribute("int, read-only: workers kept while running (change with ``resize``).")
    max_workers = Attribute("int, read-only: the most workers the pool grows to (change with ``resize``).")

    def run():
        """Start ``min_workers`` workers and begin executing the backlog.

        A no-op unless STOPPED (so calling it twice is safe). Never blocks.
        """

    def dispatch(task, block=False, timeout=None):
        """Accept *task* (an `IDispatchTask` or zero-argument callable) for execution.

        Never blocks unless *block* is true; then it waits, up to *timeout*
        seconds (``None``: for ever), for room in the buffer, and on timeout
        treats the task as if the buffer were full. When a task waits and no
        worker is idle, the pool grows (doubling, never above ``max_workers``).

        :return bool: True if it went into the buffer; False if the buffer was
            full (with the "stack" or "queue" overflow policy it still runs
            later; with "reject" it was not kept).
        :raises InvalidArgument: if *task* is neither callable nor an `IDispatchTask`.
        """

    def submit(fn, *args, **kwargs):
        """Dispatch ``fn(*args, **kwargs)`` and return a gevent ``AsyncResult`` of it.

        Never blocks. The AsyncResult gets the value, or the exception the
        call raised (a watchdog ``gevent.Timeout`` included).
        """

    def quit(drain=False):
        """Stop every worker. Blocks until they have ended.

        ``drain=False``: in-flight tasks finish; the backlog (and anything
        dispatched meanwhile) is kept for the next ``run()``.
        ``drain=True``: every buffered and overflowed task runs first,
        including ones dispatched while draining. A no-op when STOPPED; a
        call while another is in progress waits for it (``drain=False``
        during a drain stops draining). Idempotent.
        """

    def resize(min_workers=None, max_workers=None):
        """Change the pool's bounds (clamped as at construction); a running pool moves into them.

        Never blocks: busy workers above a lowered maximum leave after their task.

        :raises InvalidArgument: if a bound is not an int.
        """

    def stats():
        """Return a dict of ints: workers, busy, idle, buffered, overflowed,
        dispatched, executed, failed, timed_out, rejected, scale_ups, scale_downs.
        Never blocks."""

    def snapshot():
        """Return a JSON-serialisable dict: ``component`` ("dispatcher"),
        ``name``, ``status`` (the Status name), the ``stats()`` keys,
        ``min_workers``, ``max_workers`` and ``max_buffered``. Never blocks."""


# -- TaskManager ---------------------------------------------------------------


class IManagedTask(Interface):
    """A named unit of work for a `ITaskManager`.

    The manager treats tasks structurally (duck typing): an object
    with callable ``name`` and ``execute`` is a task, one that also has
    ``restart`` is restartable, one with ``progress``/``description``
    reports progress, whether or not it declares these interfaces.
    """

    def name():
        """Return the task's unique name (a str); called once, by ``go``."""

    def execute(ctx):
        """Do the work; return on success, raise on failure.

        Runs on a worker greenlet. An exception (including a ``gevent.Timeout``
        that escapes) is the task's error: it is logged, the
        restart rules apply, and the worker keeps working. ``GreenletExit``,
        ``KeyboardInterrupt`` and ``SystemExit`` are never treated as task
        errors.

        :param IContext ctx: the manager's context, shared by every task and
            cancelled by ``stop()``; honour it to stop promptly.
        """


class IRestartableTask(IManagedTask):
    """A managed task that may be restarted after it failed (OTP-style supervision)."""

    def restart(ctx, error):
        """Decide whether to run again after *error*. Runs on the worker greenlet.

        Not called when *error* is a `Canceled` (cancelled work is never
        restarted) or once the manager is stopping; a `DeadlineExceeded` is
        eligible. An exception from ``restart`` is logged and means False.

        :param IContext ctx: the manager's context.
        :param error: the exception the last run raised.
        :return bool: True to queue the task again (after the manager's
            ``restart_backoff``, unless ``max_restarts`` is reached).
        """


class ITaskWithProgress(IManagedTask):
    """A managed task that reports its progress, read live by ``task_status()``."""

    def progress():
        """Return progress as a float (conventionally 0..100); an exception reads as 0.

        Called on the greenlet asking for the status; must not block.
        """

    def description():
        """Return a short human description; an exception reads as "". Must not block."""


class ITaskManager(IComponent):
    """Named unique tasks on an elastic pool of workers, with supervision.

    Task states: *not assigned* (queued, worker 0) -> *running* (on a
    worker) -> removed on success or final failure; or, after a failure whose
    ``restart`` returned True, -> *restarted* (waiting out the restart
    backoff) -> *not assigned* again. A task given up after ``max_restarts``
    moves to ``failed_tasks()``. A name is taken from ``go`` until the task
    is removed.

    Manager states: *running* -> (``stop()``) -> *stopped*. Workers: ids
    from 1, never reused; ``min_count`` always alive while running, at most
    ``max_count``; idle ones show as ``WorkerInfo("idle", "waiting")``.
    """

    name = Attribute("str, read-only: names the worker greenlets and the snapshot; default 'taskmanager'.")
    stopped = Attribute("bool, read-only: True once ``stop()`` was called.")

    def go(task):
        """Queue *task* (FIFO); return a gevent ``Event`` set once a worker picked it up.

        Never blocks. The event is a `greenworks.taskmanager.Scheduled`; it is
        also set if ``stop()`` drops the task before any worker took it, with
        ``assigned`` False.

        :raises TaskAlreadyExistsError: a task with that name is pending,
            running or waiting to restart.
        :raises ManagerStoppedError: after ``stop()``; nothing is recorded.
        :raises InvalidArgument: *task* is not an `IManagedTask`.
        """

    def go_func(key, fn):
        """Queue ``fn(ctx)`` as a task named *key*; same contract as ``go``."""

    def status():
        """Return ``{worker_id: WorkerInfo}`` for every live worker. Never blocks."""

    def task_status():
        """Return ``{name: TaskStatus}`` for every pending, running or restarting task.

        Progress and description are read live. Never blocks.
        """

    def failed_tasks():
        """Return ``{name: FailedTask}`` for tasks given up after too many restarts."""

    def snapshot():
        """Return workers, tasks and failed tasks as a JSON-serialisable dict."""

    def stop(timeout=None):
        """Cancel every running task and block until the workers exited. Idempotent.

        Tasks not yet picked up are dropped (their events set, ``assigned``
        False). Workers that outlive *timeout* (on the manager's clock) are
        killed before the error is raised; afterwards ``status()`` is empty
        and no greenlet is left.

        :raises StopTimeoutError: "failed to stop taskmanager" if workers
            outlived *timeout*.
        """


# -- JobRunner -----------------------------------------------------------------


class IJob(Interface):
    """A periodic job for a `IJobRunner`.

    `greenworks.jobs.Job` (or ``job(id, fn, schedule)``) builds one from a
    function and a schedule such as ``Every(minutes=5)`` or ``Cron("0 8 * * *")``.
    """

    def get_id():
        """Return the job's id (a str): the dedupe key, the result key, the claim key.

        An exception is logged and reported in the tick's Result; the job is not run.
        """

    def is_run(now):
        """Return whether the job is due at *now*. Called on the tick greenlet; must not block long.

        :param datetime now: the tick time, aware, in the runner's ``timezone``;
            second 0 of the minute when ``tick`` is a whole number of minutes.

        An exception is logged and reported as the job's error; the job is not run.
        """

    def run():
        """Do the work on the job's own greenlet and return a value.

        Raising reports a `PanicError` (``recovered`` is the exception);
        returning an exception instance reports that exception as the error
        (like a Go ``return nil, err``). ``stop()`` cancels its ``ctx``, if it has one.
        """


class IJobRunner(IComponent):
    """Runs jobs when they are due, under a global concurrency limit, once per cluster.

    States: *running* (from construction) -> ``stop(wait=False)`` ->
    *stopping* (nothing is scheduled any more; jobs waiting for a slot get a
    `ShuttingDownError`; running jobs carry on) -> ``wait()`` or ``stop()``
    -> *stopped* (every batch done, ``results`` closed, no greenlet left).
    ``stop()`` with its default ``wait=True`` does both, killing what
    outlives its *timeout*.

    Jobs (`IJob`) come from ``add_job``/``scheduled``/``set_jobs`` (kept,
    run whenever due) and ``push``/``push_and_await`` (batches used once).
    A job's ``run`` is called with no argument (a `greenworks.jobs.Job`
    passes its own arguments, and a ``ctx`` when its function takes one).
    """

    name = Attribute("str, read-only: the runner's name (greenlet names, logs, snapshot); default 'jobs'.")
    tick = Attribute(
        "float, read-only: seconds between the wall-clock boundaries at which polled jobs and pushed"
        " batches are looked at; default 60."
    )
    limit = Attribute("int or None, read-only: jobs running at once across all batches; default 50.")
    results = Attribute(
        "Iterable stream of Results, read-only: keeps the newest ``results_buffer``, drops the oldest; "
        "iteration ends once the runner stopped and it is drained."
    )
    is_leader = Attribute("bool, read-only: whether it led its last wake-up (always True without a lock).")
    paused = Attribute("bool, read-only: whether ``pause()`` holds every job.")

    def add_job(fn, schedule=None):
        """Schedule ``fn(*args, **kwargs)``; return its Job.

        Keyword-only options: ``id``, ``args``, ``kwargs``, ``max_instances``
        (default 1), ``misfire_grace_time``, ``coalesce``, ``jitter``,
        ``timeout``, ``replace_existing``.

        :raises JobExistsError: the id is taken and *replace_existing* is false.
        :raises InvalidScheduleError: an ``At`` already past its grace.
        :raises InvalidArgument: naming any other bad option.
        """

    def scheduled(schedule=None):
        """A decorator: ``add_job`` of the decorated function (same keyword options); returns it."""

    def remove_job(job_id):
        """Remove a job; a run in progress finishes. :raises JobLookupError: no such job."""

    def get_job(job_id):
        """Return the job of that id, or None."""

    def get_jobs():
        """Return every job, in the order they were added."""

    def pause_job(job_id):
        """Hold a job: its due times pass unrun (reported). :raises JobLookupError: no such job."""

    def resume_job(job_id):
        """Resume a job at its first due time after now. :raises JobLookupError: no such job."""

    def pause():
        """Hold every job until ``resume()``."""

    def resume():
        """End ``pause()``; the due times that passed meanwhile are not run."""

    def run_job_now(job_id):
        """Run a job now, outside its schedule (under ``limit`` and ``max_instances``); an AsyncResult
        of its Result. :raises JobLookupError: no such job."""

    def next_run_time(job_id):
        """The job's next due time (aware datetime), or None. :raises JobLookupError: no such job."""

    def push(batch, timeout=None):
        """Queue a batch of jobs for the next tick; one batch is taken per tick, first in first out.

        Blocks while ``batch_buffer`` batches wait, up to *timeout* seconds.
        Never blocks after ``stop()``.

        :return bool: False after ``stop()`` or on timeout (the batch was not kept).
        :raises InvalidArgument: if *batch* is not an iterable of `IJob`.
        """

    def push_and_await(batch):
        """Run a batch now, bypassing the tick and the FIFO; return an ``AsyncResult`` of its Result.

        ``is_run`` is asked once, in the caller's greenlet. Never blocks.
        After ``stop()`` the AsyncResult holds a ``ShuttingDownError``.
        """

    def set_jobs(jobs):
        """Replace the whole set of jobs (refusing two with one id). Never blocks but for a store."""

    def stats():
        """Return the counters and sizes as a new dict of ints. Never blocks."""

    def in_flight_ids():
        """Return the sorted ids running or waiting for a slot (tracked only with dedupe, else [])."""

    def snapshot():
        """Return a JSON-serialisable dict: the header, tick, limit, paused, last_tick, next_tick,
        is_leader, leader_error, store, stats, and jobs (one dict per job)."""

    def stop(timeout=None):
        """Stop scheduling; with keyword ``wait=True`` (the default) wait for the jobs too, killing what
        outlives *timeout*.

        Queued batches are discarded (counted), a held leader lease released.
        ``wait=False`` returns once the scheduler greenlets ended. Idempotent.

        :return bool: False if jobs had to be killed.
        """

    def wait(timeout=None):
        """Stop scheduling, block until in-flight batches finished, then close ``results``; kills nothing.

        :return bool: False if *timeout* passed first (results stay open).
        """

    def stop_and_wait(timeout=None):
        """The seed's name for ``stop(timeout)``."""


# -- runutil -------------------------------------------------------------------


class IBackoff(Interface):
    """A pure strategy for the wait between attempts (runutil's ``Backoff``).

    Stateless and immutable: one instance may serve any number of greenlets.
    It never sleeps; callers wait with ``greenworks.runutil.wait``.
    """

    def duration(attempt):
        """Return the seconds to wait before *attempt*, a float ``>= 0``; never blocks.

        :param int attempt: failures so far; attempt 0 (the first try) always gives 0.
        :raises ValueError: for a negative or non-int attempt (an `InvalidArgument`).
        """


class IRunOnce(Interface):
    """A job that runs to completion once (runutil's ``Job``).

    Any callable ``f(ctx)`` is accepted wherever an `IRunOnce` is.
    """

    def run_once(ctx):
        """Do the work once; return on success (the value is passed on), raise on failure.

        May block. Should return or raise soon after *ctx* is done; raising
        *ctx*'s own `Canceled`/`DeadlineExceeded` then counts as stopping,
        not failing, for ``repeat`` and ``retry_job``.

        :param IContext ctx: cancelled when the work is no longer wanted.
        """


class IWorkerConfigurer(Interface):
    """An object that describes its own workers (runutil's ``WorkerConfiger``).

    Provided to a registry with ``greenworks.runutil.provide_worker``; its
    workers run under ``run_provided_workers`` as the subsystem
    ``/<module>/<Class>`` of the configurer.
    """

    def workers():
        """Return a list of `IWorker` or callables ``f(ctx)`` (``None`` entries are skipped).

        Called once per ``run_provided_workers``; must not block.
        """


# -- coordination -------------------------------------------------------------


class ILeaderLock(Interface):
    """A lease that at most one process holds at a time (`greenworks.coordination`).

    States: *free* -> ``acquire()`` -> *held* -> ``release()``, the lease
    expiring (ttl without ``renew()``), or the holder dying -> *free*.
    Each instance is one contender with its own ``holder`` id; a process
    forked from a holder is a new contender and never inherits the lease.

    Failure contract: a backend error (file system, network, Redis down)
    never raises out of ``acquire``, ``renew``, ``release`` or ``claim``;
    it is logged and read as the safe answer: not held, not claimed. Bad
    arguments raise `InvalidArgument`. No method blocks the hub for longer
    than one round trip to the backend; all may switch greenlets.
    """

    is_held = Attribute(
        "bool, read-only: whether this instance holds the lease now (False once its ttl passed"
        " without a confirmed renewal)."
    )
    holder = Attribute("str, read-only: this instance's id, 'host:pid:nonce'; new after fork.")

    def acquire(ttl=None):
        """Try once to take the lease for *ttl* seconds; never waits for it.

        Called by the holder, it extends the lease instead (like ``renew``).

        :param float ttl: seconds (> 0); ``None``: the lock's default. A
            lease the OS ties to the holder's life (``FileLock``) ignores it.
        :return bool: True if this instance holds the lease afterwards.
        :raises InvalidArgument: *ttl* is not a number > 0 nor None.
        """

    def renew():
        """Extend a held lease by its ttl; never extends another holder's lease.

        :return bool: False if the lease was lost (expired, taken over, or
            unconfirmable because of an error); the instance is then *free*
            and may ``acquire`` again.
        """

    def release():
        """Give the lease up if held; never deletes another holder's lease. Idempotent."""

    def claim(key, ttl):
        """Take a one-off claim on *key* (e.g. ``job-id@tick``) for *ttl* seconds.

        Independent of the lease: `JobRunner` claims ``"<job id>@<tick>"``
        before running a job, so a job runs at most once per tick even while
        leadership moves. Claims are shared by every instance using the same
        backend and name.

        :return bool: True for exactly one caller per key while the claim lives.
        :raises InvalidArgument: *ttl* is not a number > 0, or *key* not a str.
        """


# -- events -------------------------------------------------------------------
#
# Published with ``zope.event.notify`` (see `greenworks.events`), like
# gevent's own `gevent.events`. Subscribers run synchronously on the greenlet
# that emitted the event, so they must not block; one that raises is logged
# once and never breaks the component.


class IGreenworksEvent(Interface):
    """Something that happened to a greenworks component."""

    component = Attribute(
        "The component object that emitted the event (None for HubBlocked of a foreign greenlet)."
    )
    name = Attribute("str: the component's name (None when there is no component).")
    at = Attribute("datetime, aware UTC: the component's clock's wall time when it happened.")


class IComponentStarted(IGreenworksEvent):
    """The component entered *running*."""


class IComponentStopped(IGreenworksEvent):
    """The component reached *stopped*."""

    clean = Attribute("bool: True if everything ended in time, False if stragglers were killed.")


class IPoolScaled(IGreenworksEvent):
    """A Dispatcher grew or shrank its pool of workers."""

    before = Attribute("int: workers before.")
    after = Attribute("int: workers after.")
    reason = Attribute('str: "backlog" (work waited), "idle" (quiet period) or "resize" (resize() called).')


class ITaskFailed(IGreenworksEvent):
    """A Dispatcher task raised."""

    task = Attribute("The task (or the submitted call).")
    error = Attribute("The exception it raised.")


class ITaskTimedOut(IGreenworksEvent):
    """A Dispatcher task ran past ``task_timeout`` and was interrupted."""

    task = Attribute("The task (or the submitted call).")
    seconds = Attribute("float: the task_timeout it overran.")


class ITaskRejected(IGreenworksEvent):
    """A Dispatcher task was not kept (a full buffer with ``overflow="reject"``, or refused after stop)."""

    task = Attribute("The task (or the submitted call).")


class IWorkerStarted(IGreenworksEvent):
    """A Runner started the worker of a task (``run(ctx)`` is about to be called)."""

    task = Attribute("The task.")


class IWorkerExited(IGreenworksEvent):
    """A Runner worker ended."""

    task = Attribute("The task.")
    error = Attribute("The exception ``new_worker`` or ``run`` raised, or None.")


class ITaskRestarted(IGreenworksEvent):
    """A TaskManager task failed and will run again."""

    task_name = Attribute("str: the task's name.")
    restarts = Attribute("int: restarts so far, this one included.")
    error = Attribute("The exception of the failed run.")


class ITaskGaveUp(IGreenworksEvent):
    """A TaskManager task failed for good (not restartable, or over ``max_restarts``)."""

    task_name = Attribute("str: the task's name.")
    restarts = Attribute("int: restarts it had.")
    error = Attribute("The exception of its last run.")


class IJobStarted(IGreenworksEvent):
    """A JobRunner job began running."""

    job_id = Attribute("str: the job's id.")
    tick = Attribute("datetime: the due time (tick) it runs for.")


class IJobFinished(IGreenworksEvent):
    """A JobRunner job ended."""

    job_id = Attribute("str: the job's id.")
    tick = Attribute("datetime: the due time (tick) it ran for.")
    value = Attribute("What the job returned (None on error).")
    error = Attribute("None, or the job's error (a PanicError, a returned exception, DeadlineExceeded).")
    duration = Attribute("float: seconds it ran.")
    lateness = Attribute("float: seconds between its due time and its start.")


class IJobSkipped(IGreenworksEvent):
    """A due JobRunner job was not run."""

    job_id = Attribute("str: the job's id.")
    tick = Attribute("datetime: the due time it was skipped for.")
    reason = Attribute(
        'str: "dedupe" / "max_instances", "limit" (stopped while waiting for a slot), "claimed" (another'
        ' process has it), "not_leader", "paused" or "misfired".'
    )


class ITicksMissed(IGreenworksEvent):
    """A JobRunner's hub was busy past tick boundaries."""

    count = Attribute("int: tick boundaries that passed unseen.")


class ILeadershipAcquired(IGreenworksEvent):
    """A JobRunner took its leader lock."""


class ILeadershipLost(IGreenworksEvent):
    """A JobRunner lost (or gave up) its leader lock."""

    reason = Attribute('str: "lost" (renewal failed), "error" (backend unreachable), "fenced", "stopped".')


class IHubBlocked(IGreenworksEvent):
    """The event loop did not run for longer than ``max_blocking_time`` (`greenworks.monitor`)."""

    seconds = Attribute("float: how long the loop had been blocked when it was seen.")
    greenlet_name = Attribute("str: the name of the greenlet that was running (ours or not).")
    component_name = Attribute("str or None: the greenworks component that greenlet belongs to.")
    task_or_job = Attribute("str or None: the task or job id it was running, when known.")
    stack = Attribute("str: the formatted stack of that greenlet at the time.")


# -- coordination: fencing and cluster (greenworks.coordination, greenworks.cluster) --
#
# Kept in a section of its own so `ILeaderLock` stays what third-party locks
# already implement; the three greenworks locks provide `IFencedLock` too.


class IFencedLock(ILeaderLock):
    """A leader lock whose leases carry fencing tokens, and whose claims are fenced.

    Fencing: every successful acquisition (never a renewal) gets a token
    greater than every token handed out before it, by any instance sharing
    the backend and name (one counter per lock: ``INCR <name>:fence`` for
    Redis, ``<path>.fence`` for a file, shared state for `LocalLock` peers).
    A counter that was lost (file deleted, Redis restarted without its data)
    starts again from the wall clock in microseconds, so tokens keep
    increasing across the loss.

    ``claim`` is fenced by the token of the instance's *latest* acquisition,
    kept after the lease lapsed precisely so a resumed stale holder is
    refused: a claim whose token is older than the lock's latest acquisition
    (hence older than every token that claimed after it) returns
    ``ClaimResult.FENCED``, checked atomically with the claim itself, and the
    instance drops its lease. An instance that never acquired claims
    unfenced, as `ILeaderLock` says.

    Outages: a failing backend is logged once when the outage starts (one
    WARNING with its traceback) and once when it ends, never per call;
    ``last_error`` holds the exception meanwhile.
    """

    token = Attribute(
        "int or None, read-only: the fencing token of the lease this instance holds now;"
        " None while not held. Pass it to your own writes (a database row version, an"
        " object store precondition) so they refuse a stale leader's late writes."
    )
    last_error = Attribute(
        "BaseException or None, read-only: the exception of the latest failed backend call;"
        " None after any successful one (and always None for LocalLock)."
    )

    def claim(key, ttl):
        """Take a one-off claim on *key* for *ttl* seconds, fenced (see the interface).

        :return ClaimResult: truthy only for ``CLAIMED``; ``TAKEN`` when the
            key is claimed already; ``FENCED`` when a newer holder acquired
            the lock after this instance did (the instance is stale; its
            lease is dropped); ``FAILED`` on a backend error (``last_error``).
        :raises InvalidArgument: *ttl* is not a number > 0, or *key* not a str.
        """


class IMembership(Interface):
    """Who is alive in a group, and per-task leases tied to a member's session (`greenworks.cluster`).

    A member joins with a *session* (a fresh random id per join) and keeps
    it alive by beating at least every ``heartbeat`` seconds; a session not
    heard from for ``ttl`` seconds is dead. A task lease names the session
    that holds it and is valid exactly while that session is alive, so one
    beat renews every lease of the member, however many: one round trip per
    beat, whatever the number of tasks. Each grant takes a fencing token from
    one counter per group. After the backend lost its data (or on the very
    first use of a group) no lease is granted for one ``ttl``, so a member
    that still runs what it held before the loss has stopped first.

    States of a session: *joining* -> ``beat(join=True)`` -> *alive* ->
    (``beat`` at least every ttl) ... -> ``leave()``, ``ttl`` without a beat,
    or backend data loss -> *dead* (``beat`` then answers ``lapsed``; join
    again with a new session).
    """

    group = Attribute("str, read-only: the group's name; members of one group share tasks.")
    member = Attribute("str, read-only: this member's id, default 'host:pid:<random suffix>'.")
    ttl = Attribute("float, read-only: seconds a session lives without a beat (default 5.0).")
    heartbeat = Attribute("float, read-only: seconds between beats (default ttl / 3, at most ttl / 2).")
    members = Attribute("tuple of str, read-only: the live members at the latest successful beat, sorted.")
    last_error = Attribute("BaseException or None, read-only: the latest failed call's exception.")

    def beat(session, join, claims=(), releases=(), previous=None):
        """One round trip: keep *session* alive (or start it), release, then claim leases.

        :param str session: this member's current session id.
        :param bool join: True to start *session* (after a lapse, or at start).
        :param str previous: with *join*, the member's own earlier session,
            which the join may replace even while it is alive; any other live
            session of the same member id answers ``conflict``.
        :param claims: task keys (str) to lease for *session*; a lease held by
            another live session is refused, one of a dead session is taken over.
        :param releases: task keys whose lease *session* gives up.
        :return: a ``MembershipBeat`` (``lapsed``, ``members``, ``tokens`` - one
            per claim, 0 when refused - and ``quiet``, seconds before grants
            resume), or None when the backend failed (``last_error``).
        :raises InvalidArgument: a key is not a str.
        """

    def leave(session, releases=()):
        """End *session* now: its leases are free for the others at once; release *releases* first.

        :return bool: False when the backend failed (the session then dies by its ttl).
        """


class IClusterRunner(IComponent):
    """A `IRunner` whose desired set is shared by every member of a group (`greenworks.cluster`).

    Every member applies the same set; each task is owned by the live member
    rendezvous hashing picks for its key, and runs there only while that
    member holds the task's lease. States are `IComponent`'s; ``apply_tasks``
    on a *new* runner starts it.

    Guarantees: a task never runs on two members at once (a new owner starts
    it only after the old one released its lease or the lease expired; a
    member that cannot renew stops its tasks before its leases can expire);
    a dead member's tasks run again within ``ttl + heartbeat``; ``stop()``
    hands its tasks over at once.
    """

    member = Attribute("str, read-only: this member's id (the membership's).")
    stop_timeout = Attribute("float or None, read-only: seconds a worker may ignore cancellation.")

    def apply_tasks(tasks, timeout=None):
        """Make the cluster's desired set *tasks*; start this member's share, stop the rest here.

        Blocks for one membership round (claims of new tasks of this
        member's share) and until local workers of tasks no longer wanted
        here have exited (at most *timeout* seconds).

        :raises RunnerClosedError: after ``stop()``.
        :raises DeadlineExceeded: *timeout* passed before stale workers exited.
        :raises InvalidArgument: a task has no stable key (pass ``key=``).
        """

    def tasks():
        """Return the desired tasks (the whole cluster's), in first-applied order. Never blocks."""

    def owned():
        """Return the desired tasks whose lease this member holds now. Never blocks."""

    def lease(task):
        """Return the fencing token of this member's lease on *task*, or None. Never blocks."""

    def status():
        """Return the local workers' `WorkerStatus` list (this member's share). Never blocks."""


# -- monitor and metrics (observe) ----------------------------------------------
#
# Kept in one block, with its own ``__all__`` extension, so that it merges
# beside the other sections without touching them.


class IHubWatch(IComponent):
    """Hub-blocking detection and attribution (`greenworks.monitor.watch_hub`); one per process.

    States: *new* -> ``start()`` -> *running* (a native watcher thread looks
    at the hub; `IHubBlocked` events are emitted from the hub's thread once
    the loop runs again) -> ``stop()`` -> *stopped*. ``start()`` and ``stop()``
    must be called from the thread whose hub is watched.
    """

    max_blocking_time = Attribute("float, read-only: seconds the loop may go without a switch (> 0).")

    def counts():
        """Return ``{component name: blocks seen}`` (foreign greenlets under ``None``). Never blocks."""

    def top_blockers(n=10):
        """Return the *n* worst culprits, most blocked seconds first, as JSON-ready dicts.

        Each has ``greenlet_name``, ``component_name``, ``task_or_job``,
        ``foreign``, ``count``, ``seconds`` (total), ``max_seconds``,
        ``last_at`` (ISO 8601 UTC) and ``last_stack``. Never blocks.
        """


class IMetrics(Interface):
    """What `greenworks.metrics.install` returns: the Prometheus export of greenworks events."""

    registry = Attribute("prometheus_client.CollectorRegistry, read-only: where the metrics live.")
    installed = Attribute("bool, read-only: whether the event subscriber is still subscribed.")

    def register(*components):
        """Read ``stats()``/``snapshot()`` of *components* at scrape time for the gauges; returns self."""

    def uninstall():
        """Unsubscribe and unregister the collectors; idempotent. Never blocks."""


__all__ += ["IHubWatch", "IMetrics"]
# -- executor, task groups, supervisors (exec) --------------------------------


class IMapping(Interface):
    """Parallel ``map`` over a pool (gevent ``Pool.map``/``imap``/``imap_unordered``).

    Provided by `greenworks.dispatcher.Dispatcher`. Each item runs as one
    dispatched task; the calls feeding the pool run in a background greenlet
    named ``greenworks.<pool name>.imap``, which puts each task into the
    pool with ``dispatch(block=True)``: when the pool's buffer is full it
    waits for room, so a long or endless input is read only as fast as the
    pool works through it. The pool must be running for anything to happen.
    """

    def map(fn, *iterables):
        """Return ``[fn(*args) for args in zip(*iterables)]``, computed in parallel, in input order.

        Blocks until every result is in, or until the first failure in input
        order, which it raises; items not yet dispatched then are not.

        :raises InvalidArgument: *fn* not callable, or no iterable given.
        """

    def imap(fn, *iterables, maxsize=None):
        """Return an iterator of ``fn(*args)`` in input order, computed in parallel.

        The work starts at once (not at the first ``next()``). ``next()``
        blocks until the next result in order is in, and raises that item's
        exception if it failed; iterating on afterwards gives the later
        results. An exception raised by an input iterable comes after the
        results of the items before it.

        :keyword int maxsize: at most this many items are dispatched and not yet
            read (``None``: bounded by the pool's buffer only). The feeding
            greenlet blocks on it; every ``next()`` frees one place.
        :return: an iterator with ``close()`` (also a context manager): closing
            it stops the feeding; tasks already dispatched run, their results
            are dropped.
        :raises InvalidArgument: *fn* not callable, no iterable, or *maxsize* not an int >= 1.
        """

    def imap_unordered(fn, *iterables, maxsize=None):
        """Like `imap`, but yields each result as soon as it is in, in completion order."""


class IGreenExecutor(IComponent):
    """A ``concurrent.futures.Executor`` whose workers are greenlets of an elastic Dispatcher.

    ``submit``, ``map``, ``shutdown`` and the context manager are exactly the
    standard library's (``concurrent.futures.Executor``); ``submit`` returns a
    genuine ``concurrent.futures.Future``. On top of that it is a component.

    States (`greenworks.State`): *running* from construction -> ``shutdown()``
    / ``stop()`` -> *stopping* (the backlog runs) -> *stopped*. ``start()``
    after *stopped* opens it again (``submit`` works again); while *stopping*
    it raises ``RuntimeError``.
    """

    max_workers = Attribute("int, read-only: the most worker greenlets (default 100).")
    min_workers = Attribute("int, read-only: worker greenlets kept while running (default 0).")

    def submit(fn, *args, **kwargs):
        """Schedule ``fn(*args, **kwargs)``; return its ``concurrent.futures.Future``. Never blocks.

        :raises RuntimeError: after ``shutdown()`` (and at interpreter exit), like the stdlib.
        :raises BrokenExecutorError: once an initializer failed.
        :raises InvalidArgument: *fn* is not callable.
        """

    def shutdown(wait=True, *, cancel_futures=False):
        """Refuse new work; run what was submitted (``cancel_futures``: cancel what has not started).

        With *wait*, blocks until every accepted task has ended. Idempotent.

        :raises ReentrantStopError: ``wait=True`` from one of its own tasks.
        """

    def stats():
        """Return a dict of ints: submitted, pending, running, completed, failed, cancelled,
        workers, idle. Never blocks."""


class ITaskStatus(Interface):
    """What a child started with ``ITaskGroup.start`` gets as ``task_status=`` (trio's contract)."""

    def started(value=None):
        """Tell the waiting ``start()`` that the child is ready; ``start()`` returns *value*.

        Never blocks.

        :raises TaskGroupError: called twice.
        """


class ITaskGroup(Interface):
    """A scope that owns greenlets: none outlives it (trio's nursery, asyncio's TaskGroup).

    States: *open* (``with`` body running, or waiting in ``__exit__``) ->
    *closed* (``__exit__`` returned or raised). While open, children may be
    spawned from anywhere (the body, a child); a closed group refuses them.

    The group's `IContext` (``ctx``) is cancelled by the first failure of a
    child or of the body, by ``cancel()``, by the ``timeout`` or when the
    parent context ends. ``grace`` seconds after that, every child still
    running is killed (``GreenletExit``). The body is never interrupted: it
    sees ``ctx`` like the children do.
    """

    ctx = Attribute("IContext, read-only: the group's context; children should watch it.")
    cancelled = Attribute("bool, read-only: whether the group's context is done.")

    def spawn(fn, *args, name=None):
        """Start ``fn(*args)`` in a child greenlet of the group and return the greenlet. Never blocks.

        The greenlet is named ``greenworks.task_group[<group>.<n>:<name>]``.

        :raises TaskGroupError: the group is closed.
        :raises InvalidArgument: *fn* is not callable.
        """

    def start(fn, *args, name=None):
        """Start ``fn(*args, task_status=status)`` as a child and block until it calls
        ``status.started(value)``; return *value*.

        If the child fails first, ``start()`` raises its exception (the group
        does not also count it); if it returns first, `TaskGroupError`; if the
        group is cancelled first, a fresh copy of ``ctx.err``.
        """

    def cancel():
        """Cancel the group's context (children are killed after ``grace``). Never blocks.

        A group cancelled this way exits quietly (trio's ``move_on``) unless
        something failed.
        """


class IChild(Interface):
    """How a supervisor runs one child (OTP's child spec)."""

    name = Attribute("str, read-only: unique among its siblings.")
    restart = Attribute('str, read-only: "permanent" (default), "transient" or "temporary".')
    shutdown = Attribute(
        "float or None, read-only: seconds it gets to end after its context is cancelled before it"
        " is killed (default 5.0; None: waited for, the default for a child supervisor)."
    )
    spec = Attribute("The IWorker, callable ``f(ctx)`` or ISupervisor run.")


class ISupervisor(IComponent, IWorker):
    """Erlang/OTP supervision: children restarted by a strategy, within a restart intensity.

    States (`greenworks.State`): *new* -> ``start()`` (or ``run(ctx)`` under
    a parent) -> *running* -> *stopping* (children stopped in reverse order)
    -> *stopped*. A supervisor that gave up (more than ``max_restarts``
    restarts within ``period`` seconds) stops its children and ends with
    `RestartIntensityExceeded`: ``run(ctx)`` raises it, which is how a parent
    supervisor sees a failed child; a root started with ``start()`` logs one
    ERROR, shows it in ``snapshot()`` and raises it from ``wait()``.
    """

    strategy = Attribute('str, read-only: "one_for_one", "one_for_all" or "rest_for_one".')
    error = Attribute("The RestartIntensityExceeded it ended with, or None; read-only.")

    def wait(timeout=None):
        """Block until the supervisor has stopped.

        :return bool: True once stopped; False if *timeout* passed first.
        :raises RestartIntensityExceeded: it gave up.
        """


# -- schedules (greenworks.schedules) -------------------------------------------


class ISchedule(Interface):
    """When a job is due: a pure strategy (no greenlet, no clock read, no I/O).

    `greenworks.schedules` provides ``Every``, ``Interval``, ``At``, ``Cron``,
    ``AnyOf`` and ``AllOf``. A schedule only answers about the times it is
    given; nothing in it blocks or switches. It may cache (``Cron`` keeps its
    next fire time), so it is safe to share between greenlets, not threads.

    The two questions agree: for every aware *t*, ``next_after(t)`` is None or
    a time *n* > *t* with ``is_run(n)`` True and no fire time in between.
    """

    def is_run(now):
        """Return whether *now* is a fire time (bool). Also spelled ``schedule(now)``.

        :param datetime now: an aware datetime (the runner's tick time).
        :raises InvalidArgument: *now* is not an aware datetime.
        """

    def __call__(now):
        """The same as ``is_run(now)``."""

    def next_after(dt):
        """Return the first fire time strictly after *dt*, or None when there is none any more.

        :param datetime dt: an aware datetime.
        :return: an aware datetime in the zone of *dt* (``dt.tzinfo``), or None
            (an ``At`` in the past, an ``Interval`` past its end, an ``AllOf``
            without a common time within its horizon).
        :raises InvalidArgument: *dt* is not an aware datetime.
        """

    def describe():
        """Return a short text for logs and snapshots (str), e.g. ``"every 5m"``,
        ``"cron '0 8 * * *' Europe/Berlin"``. ``str(schedule)`` is the same."""


# -- job stores (greenworks.jobstores) ------------------------------------------


class IJobStore(Interface):
    """The state of scheduled jobs that must survive restarts and agree across processes.

    Functions are never stored: jobs are declared in code at start-up and the
    store keeps, per job id, a `greenworks.jobstores.JobState`: the last due
    time that was claimed for running (``last_due``, aware UTC), the next due
    time (``next_due``), the ``paused`` flag and the last run's outcome
    (``last_run``, for snapshots). Times are kept to the microsecond.

    The heart is `claim`: one atomic compare-and-set per due time, "due time
    *T* of job *J* is being run", which succeeds for exactly one caller
    sharing the store (threads, greenlets, processes, hosts: as far as the
    backend reaches) and never for a *T* at or before the last one recorded,
    so a run is never repeated across restarts or processes. A runner reads
    the state at start-up (`add`, `states`) to catch up a due time missed
    while no process was running.

    Failure model (the leader locks'): a backend error never raises out of a
    method; it is logged once per outage (ERROR, and once more when the
    backend answers again), shown in `error`, and read as the safe answer:
    `claim` returns ``Claim.ERROR`` (nothing recorded: the run is skipped,
    never doubled), writes return False, reads return None or ``{}``. Bad
    arguments (an empty id, a naive datetime) raise `InvalidArgument` at once.
    A store that cannot be opened, or a bad URL, raises at construction.

    Every method may block the calling greenlet for one backend round trip
    (none for `MemoryJobStore`) but never the hub.
    """

    name = Attribute("str, read-only: what the store is, for logs and snapshots ('memory', 'sqlite:<path>').")
    error = Attribute("str or None, read-only: the error of the backend outage in progress, or None.")

    def add(job_id, next_due=None):
        """Declare *job_id*: insert its state if the store has none, keep it as it is otherwise.

        :param datetime next_due: aware; stored only when the job is new.
        :return: the stored `JobState` (the existing one, untouched, after a
            restart), or None on a backend error.
        """

    def get(job_id):
        """Return the `JobState` of *job_id*, or None (unknown job, or a backend error)."""

    def states():
        """Return ``{job_id: JobState}`` for every job in the store (``{}`` on a backend error)."""

    def claim(job_id, due, next_due=None):
        """Atomically record that due time *due* of *job_id* is being run.

        Succeeds only when the job is not paused and *due* is later than its
        ``last_due`` (or it has none); then ``last_due`` becomes *due* and,
        when *next_due* is given, ``next_due`` becomes it, in the same step.
        A job the store does not know yet is added.

        :param datetime due: aware; the due time (not the time the run starts).
        :param datetime next_due: aware or None (leave ``next_due`` as it is).
        :return: a `greenworks.jobstores.Claim`, true only for ``Claim.CLAIMED``:
            ``TAKEN`` (*due* <= ``last_due``: run here or elsewhere already),
            ``PAUSED`` (nothing recorded) or ``ERROR`` (backend error, nothing recorded).
        """

    def claim_many(claims):
        """`claim` for each ``(job_id, due, next_due)`` of *claims*, in one backend round trip.

        Each item is claimed atomically on its own (not all or nothing).

        :return: a list of `Claim`, in the order of *claims*.
        """

    def set_next_due(job_id, next_due):
        """Store *next_due* (aware, or None: no more runs) for *job_id*; return False on a backend error."""

    def set_paused(job_id, paused):
        """Store the paused flag (bool) of *job_id*; while set, `claim` returns ``PAUSED``.

        :return bool: False on a backend error.
        """

    def record_run(job_id, last_run):
        """Store *last_run* (a `greenworks.jobstores.LastRun`) as the job's last outcome.

        :return bool: False on a backend error.
        """

    def remove(job_id):
        """Forget *job_id* entirely; return False on a backend error (True if it was unknown)."""

    def snapshot():
        """Return ``{"kind", "name", "error", "errors_total"}`` (JSON types)."""

    def close():
        """Release the backend connections the store opened (idempotent); a client passed in stays open.

        A later call opens a new connection when it needs one.
        """


# -- streams ------------------------------------------------------------------
#
# Durable work on Redis Streams consumer groups (`greenworks.streams`).


class IMessage(Interface):
    """One delivery of a stream message to a handler; read-only."""

    id = Attribute("str: the stream entry id (``<ms>-<seq>``); the same on every delivery.")
    task = Attribute("str: the handler name it was sent to.")
    args = Attribute("tuple: the positional arguments (JSON values; sent tuples arrive as lists).")
    kwargs = Attribute("dict: the keyword arguments (JSON values).")
    delivery_count = Attribute("int >= 1: Redis's count of deliveries of this message, this one included.")
    stream = Attribute("str: the stream's key.")
    group = Attribute("str: the consumer group.")
    consumer = Attribute("str: the consumer that received this delivery.")


class IStreamProducer(Interface):
    """Adds messages for `IStreamConsumer` handlers to a Redis stream."""

    stream = Attribute("str, read-only: the stream's key.")
    maxlen = Attribute(
        "int or None, read-only: the approximate length the stream is trimmed to (``MAXLEN ~``)."
    )

    def send(task_name, *args, dedupe_key=None, **kwargs):
        """Add a message asking for ``handlers[task_name](*args, **kwargs)``; return its id (str).

        Blocks for one round trip. With *dedupe_key*, a second send with the
        same key within the producer's ``dedupe_ttl`` adds nothing and
        returns the id of the first.

        :raises InvalidArgument: naming the argument, for a bad task name or
            dedupe key, or an argument JSON cannot carry.
        """

    def stats():
        """Return a dict of ints: ``sent`` and ``duplicates``. Never blocks."""


class IDedupe(Interface):
    """Remembers which messages completed, so that a redelivery can be skipped."""

    def seen(message):
        """Whether the `IMessage` *message* completed before. Blocks (one round trip)."""

    def remember(messages):
        """Record that every `IMessage` in *messages* completed. Blocks (one round trip)."""


class IStreamConsumer(IComponent):
    """Runs handlers for the messages of a Redis stream consumer group on a Dispatcher.

    States: *new* -> ``start()`` -> *running* -> ``stop()`` -> *stopping* ->
    *stopped*; ``start()`` again starts afresh. Delivery is at least once:
    a message is acked after its handler returned, so a handler may run
    more than once for one message (a consumer that died before the ack, a
    hub blocked past ``claim_idle``); handlers get ``delivery_count`` and
    the message id through ``current_message()`` to tell.
    """

    stream = Attribute("str, read-only: the stream's key.")
    group = Attribute("str, read-only: the consumer group.")
    consumer = Attribute("str, read-only: this consumer's name in the group (default ``host:pid``).")
    dead_letter = Attribute("str, read-only: the dead-letter stream's key.")
    dispatcher = Attribute("IDispatcher, read-only: where the handlers run.")
    capacity = Attribute(
        "int, read-only: the most un-acked messages held at once"
        " (the dispatcher's max_buffered + max_workers)."
    )

    def run(ctx):
        """Start, block until *ctx* is done, then ``stop()``: the consumer as an `IWorker`."""

    def stats():
        """Return a dict of numbers (and None where unknown): held, in_flight, queued,
        waiting_retry, acked, failed, retried, dead_lettered, reclaimed, handed_back,
        skipped_duplicates, lost, lag, pending. Never blocks."""


class IMessageAcked(IGreenworksEvent):
    """A stream message's handler returned and the message was acked."""

    message_id = Attribute("str: the message id.")
    task = Attribute("str: its task name.")
    delivery_count = Attribute("int: the delivery that completed it.")


class IMessageFailed(IGreenworksEvent):
    """A delivery of a stream message failed (its handler raised, or was interrupted)."""

    message_id = Attribute("str: the message id.")
    task = Attribute("str: its task name.")
    delivery_count = Attribute("int: the delivery that failed.")
    error = Attribute("The exception.")
    retry_in = Attribute("float seconds until the retry, or None when it is dead-lettered instead.")


class IMessageDeadLettered(IGreenworksEvent):
    """A stream message was moved to the dead-letter stream (and acked)."""

    message_id = Attribute("str: the message id.")
    task = Attribute("str: its task name.")
    delivery_count = Attribute("int: the deliveries it had.")
    error = Attribute("str: why, as written into the dead letter.")
    dead_letter_id = Attribute("str: the id of the dead letter.")


class IMessagesReclaimed(IGreenworksEvent):
    """A consumer claimed messages another consumer left pending for ``claim_idle`` seconds."""

    message_ids = Attribute("tuple of str: the claimed ids.")


class IMessagesLost(IGreenworksEvent):
    """Pending messages were deleted from the stream before they completed (``MAXLEN`` trimming, XDEL)."""

    message_ids = Attribute("tuple of str: their ids.")


class IStreamDisconnected(IGreenworksEvent):
    """A stream consumer lost Redis; it retries with backoff and loses nothing."""

    error = Attribute("str: the first error.")


class IStreamReconnected(IGreenworksEvent):
    """A stream consumer reached Redis again."""

    seconds = Attribute("float: how long the outage lasted.")


__all__ += [
    "IDedupe",
    "IMessage",
    "IMessageAcked",
    "IMessageDeadLettered",
    "IMessageFailed",
    "IMessagesLost",
    "IMessagesReclaimed",
    "IStreamConsumer",
    "IStreamDisconnected",
    "IStreamProducer",
    "IStreamReconnected",
]
# -- end streams --------------------------------------------------------------
