"""
The one worker core: a set of worker greenlets that park, wake and retire.

The Dispatcher, the TaskManager and the JobRunner each own one `WorkerSet`
and keep only their own rules (when to grow, who to wake, when to retire);
what is the same for all of them lives here:

- spawning workers as named greenlets tracked by the component's
  `~greenworks._component.Lifecycle`, each with a `Worker` record;
- parking an idle worker on its own ``Waiter`` (optionally with a timeout on
  the component's clock), so waking one costs the same with 10 or 10,000
  idle workers, and waking it from anywhere without a greenlet switch: the
  switch is a hub callback;
- retiring workers (idle ones at once, busy ones after their current item);
- interrupting a worker still busy with the same item (task timeouts);
- the root `Context` every worker's work derives from, and ``finish()``:
  join, then kill.

Worker states: a worker is ``IDLE`` exactly while it is in ``idle``;
``WAKING`` means "taken off ``idle`` (or just spawned) and not running yet",
counted in ``waking``; otherwise ``BUSY``. None of these methods switch
greenlets except :meth:`WorkerSet.park`, :meth:`WorkerSet.finish` and
:meth:`WorkerSet.hand_out` (a hub callback that switches into the workers it
wakes).
"""

from collections.abc import Callable, Sized
from typing import Any

from gevent.hub import Waiter, get_hub
from greenlet import getcurrent

from greenworks._component import Lifecycle
from greenworks.context import Context, with_cancel

__all__ = ["BUSY", "IDLE", "WAKING", "Worker", "WorkerSet"]

BUSY = 0
IDLE = 1
WAKING = 2

# What a parked worker's waiter receives when its park timed out.
_TIMED_OUT = object()


class Worker:
    """One worker greenlet's record.

    :ivar int index: its number within the set (in its greenlet's name).
    :ivar greenlet: the greenlet.
    :ivar int state: ``BUSY``, ``IDLE`` or ``WAKING``.
    :ivar bool retire: set when the worker should leave after its current item.
    :ivar int done: items it finished (any outcome): tells one item from the next.
    :ivar item: what the component handed it, if it hands work over one by one.
    """

    __slots__ = ("index", "greenlet", "waiter", "parked", "state", "retire", "done", "item", "__weakref__")

    def __init__(self, index: int) -> None:
        self.index = index
        self.greenlet: Any = None
        self.waiter = Waiter()
        # True only while blocked in waiter.get(): a switch sent at any other
        # time would be stored and end the next park at once.
        self.parked = False
        self.state = WAKING
        self.retire = False
        self.done = 0
        self.item: Any = None

    def __repr__(self) -> str:
        return "<Worker %d %s>" % (self.index, ("busy", "idle", "waking")[self.state])


class WorkerSet:
    """A component's workers. See the module docstring.

    :param Lifecycle life: the owning component's lifecycle (clock, logger, tracking).
    :param target: ``target(worker, *args)`` is each worker's body; when it
        returns (or raises) the worker is gone.
    :param str name_format: the greenlet name, ``%d`` standing for the index,
        e.g. ``"greenworks.io[%d]"``.
    :param int first_index: the first worker's index (indices are never reused).
    :param on_exit: ``on_exit(worker)``, called after a worker left the books
        (on its own greenlet, also when it was killed).
    """

    __slots__ = (
        "_life",
        "_target",
        "_name_format",
        "_next_index",
        "_on_exit",
        "workers",
        "idle",
        "waking",
        "ctx",
    )

    def __init__(
        self,
        life: Lifecycle,
        target: Callable[..., Any],
        name_format: str,
        *,
        first_index: int = 0,
        on_exit: Callable[[Worker], Any] | None = None,
    ) -> None:
        self._life = life
        self._target = target
        self._name_format = name_format
        self._next_index = first_index
        self._on_exit = on_exit
        #: Every live worker, in the order they were spawned (a dict as an ordered set).
        self.workers: dict[Worker, None] = {}
        #: Parked workers, the most recently parked last.
        self.idle: list[Worker] = []
        #: Workers woken or spawned that have not started running yet.
        self.waking = 0
        #: The root context of this run: cancelled by :meth:`close`.
        self.ctx: Context = with_cancel(None, clock=life.clock)

    # -- counts ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.workers)

    @property
    def busy(self) -> int:
        """Workers neither parked nor on their way (running an item)."""
        return len(self.workers) - len(self.idle) - self.waking

    def live(self) -> int:
        """Workers not asked to retire."""
        return sum(1 for worker in self.workers if not worker.retire)

    # -- lifecycle of the set ------------------------------------------------------

    def open(self) -> Context:
        """Give the set a fresh root context (for a new run); return it."""
        if self.ctx.err is not None:
            self.ctx = with_cancel(None, clock=self._life.clock)
        return self.ctx

    def close(self) -> None:
        """Cancel the root context: every worker's work sees it done."""
        self.ctx.cancel()

    # -- workers ----------------------------------------------------------------

    def spawn(self, *args: Any, idle: bool = False) -> Worker:
        """Start one more worker running ``target(worker, *args)``. Never switches.

        It counts as waking; with *idle* it is born parked instead (in
        ``idle`` at once, so work can be handed to it before its greenlet
        first runs; its first :meth:`park` then only waits).
        """
        index = self._next_index
        self._next_index = index + 1
        worker = Worker(index)
        self.workers[worker] = None
        if idle:
            worker.state = IDLE
            self.idle.append(worker)
        else:
            self.waking += 1
        worker.greenlet = self._life.spawn(self._name_format % index, self._main, worker, args)
        return worker

    def _main(self, worker: Worker, args: tuple[Any, ...]) -> None:
        target = self._target
        try:
            # Plain calls for the argument counts the components use: a call
            # with *args enters a new C-level eval loop, whose stack every
            # parked worker then keeps a copy of (about 190 bytes each).
            if not args:
                target(worker)
            elif len(args) == 2:
                target(worker, args[0], args[1])
            else:
                target(worker, *args)
        finally:
            self._left(worker)

    def _left(self, worker: Worker) -> None:
        self.workers.pop(worker, None)
        if worker.state == IDLE:
            try:
                self.idle.remove(worker)
            except ValueError:
                pass
        elif worker.state == WAKING:
            self.waking -= 1
        worker.state = BUSY
        if self._on_exit is not None:
            self._on_exit(worker)

    def started(self, worker: Worker) -> None:
        """A spawned worker calls this first: it is no longer waking (a worker born idle stays idle)."""
        if worker.state == WAKING:
            self.waking -= 1
            worker.state = BUSY

    def park(self, worker: Worker, timeout: float | None = None) -> bool:
        """Park *worker* (the calling greenlet) until woken or retired. Blocks.

        :param float timeout: seconds on the component's clock; ``None``: no limit.
        :return bool: True if woken (or retired: check ``worker.retire``),
            False if *timeout* passed first (the worker is then busy again).
        """
        if worker.state != IDLE:  # else born idle, and listed already
            worker.state = IDLE
            self.idle.append(worker)
        worker.parked = True
        try:
            if timeout is None:
                worker.waiter.get()
            else:
                timer = self._life.clock.call_later(timeout, self._time_out, worker)
                try:
                    if worker.waiter.get() is _TIMED_OUT:
                        return False
                finally:
                    timer.cancel()
        finally:
            worker.parked = False
        if worker.state == WAKING:
            self.waking -= 1
        worker.state = BUSY
        return True

    def _time_out(self, worker: Worker) -> None:
        # A timer callback: in the hub, or inside FakeClock.advance. Only a
        # worker still parked times out; one already woken keeps its wake-up.
        if worker.state != IDLE:
            return
        self.idle.remove(worker)
        worker.state = BUSY
        if worker.parked:
            get_hub().loop.run_callback(worker.waiter.switch, _TIMED_OUT)

    def wake(self, lifo: bool = True) -> Worker | None:
        """Wake one parked worker (the most recently parked, or the oldest); None if none is idle.

        Never switches: the worker runs at the next switch.
        """
        idle = self.idle
        if not idle:
            return None
        worker = idle.pop() if lifo else idle.pop(0)
        worker.state = WAKING
        self.waking += 1
        if worker.parked:
            get_hub().loop.run_callback(worker.waiter.switch, None)
        # else born idle and not started yet: it sees WAKING when it starts.
        return worker

    def hand_out(self, backlog: Sized) -> int:
        """Run parked workers, one at a time, while *backlog* holds more items than workers are on their way.

        Must run in the hub (a hub callback). Each worker woken (LIFO) runs at
        once, until it blocks or parks again, before the next is considered:
        a worker that drains the whole backlog leaves the others parked,
        one per item starts when each item blocks. Switches into each woken
        worker; a worker born idle that has not started yet is only marked
        waking.

        :return int: how many workers were woken.
        """
        idle = self.idle
        woken = 0
        while idle and len(backlog) > self.waking:
            worker = idle.pop()
            worker.state = WAKING
            self.waking += 1
            woken += 1
            if worker.parked:
                worker.waiter.switch(None)
        return woken

    def retire(self, count: int) -> int:
        """Ask *count* workers to leave: idle ones at once (oldest first), busy ones after their item.

        :return int: how many were asked.
        """
        retired = 0
        run_callback = get_hub().loop.run_callback
        while retired < count and self.idle:
            worker = self.idle.pop(0)
            worker.retire = True
            worker.state = BUSY
            if worker.parked:
                run_callback(worker.waiter.switch, None)
            retired += 1
        if retired < count:
            for worker in self.workers:
                if retired >= count:
                    break
                if not worker.retire:
                    worker.retire = True
                    retired += 1
        return retired

    def interrupt(self, worker: Worker, done: int, error: BaseException) -> None:
        """Throw *error* into *worker* if it is still busy with the item it had when ``done`` was read.

        Runs the check and the throw in a hub callback, so the worker cannot
        move on to its next item in between.
        """
        get_hub().loop.run_callback(self._interrupt, worker, done, error)

    @staticmethod
    def _interrupt(worker: Worker, done: int, error: BaseException) -> None:
        greenlet = worker.greenlet
        if (
            worker.state == BUSY
            and worker.done == done
            and not greenlet.dead
            and greenlet is not getcurrent()
        ):
            greenlet.throw(error)

    def current(self) -> Worker | None:
        """The worker the calling greenlet is, or None."""
        current = getcurrent()
        for worker in self.workers:
            if worker.greenlet is current:
                return worker
        return None

    def finish(self, timeout: float | None, exclude: Any = None) -> bool:
        """Wait up to *timeout* for every worker (but *exclude*'s greenlet) to end; kill the rest.

        Blocks. :return bool: True if none had to be killed.
        """
        greenlets = [w.greenlet for w in list(self.workers) if w.greenlet is not exclude]
        return self._life.finish(greenlets, timeout, "worker")
