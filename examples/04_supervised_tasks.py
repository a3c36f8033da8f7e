"""Supervised, named tasks with live progress bars and an Erlang-style restart.

Three "downloads" run on a TaskManager (2 to 4 workers). Each reports its
progress (``ITaskWithProgress``), which a monitor greenlet reads through
``task_status()`` and draws as progress bars: redrawn in place on a
terminal, one line per update otherwise. The ``flaky`` download fails half
way the first time; being an ``IRestartableTask`` it asks to be restarted,
waits out the manager's restart backoff and then completes. A duplicate name
is refused while the task is alive. The script checks every outcome.

Expected output::

    supervising 3 tasks on 2..4 workers
    duplicate refused: task with same name already exists
    ...flaky [...] ...
    alpha [####################] 100% | beta [####################] 100% | flaky [####################] 100%
    flaky failed once (OSError: connection reset) and was restarted
    restarts: alpha=0 beta=0 flaky=1
    stopped: 0 workers left
    ok
"""

from gevent import monkey

monkey.patch_all()

import logging
import sys

import gevent
from gevent.event import Event
from zope.interface import implementer

from greenworks.backoff import StaticBackoff
from greenworks.exceptions import TaskAlreadyExistsError
from greenworks.interfaces import IRestartableTask, ITaskWithProgress
from greenworks.taskmanager import TaskManager, WorkerStatus

BAR_WIDTH = 20


@implementer(ITaskWithProgress)
class Download:
    """A pretend download of *chunks* chunks, one every *pace* seconds."""

    def __init__(self, name, chunks, pace):
        self._name = name
        self.chunks = chunks
        self.pace = pace
        self.received = 0
        self.finished = Event()

    def name(self):
        return self._name

    def execute(self, ctx):
        self.received = 0
        while self.received < self.chunks:
            if not ctx.sleep(self.pace):
                ctx.raise_if_done()
            self.received += 1
            self.check(ctx)
        self.finished.set()

    def check(self, ctx):
        """Hook for failures; a plain download never fails."""

    def progress(self):
        return 100.0 * self.received / self.chunks

    def description(self):
        return "%d/%d chunks" % (self.received, self.chunks)


@implementer(IRestartableTask, ITaskWithProgress)
class FlakyDownload(Download):
    """Loses its connection half way through the first attempt."""

    def __init__(self, name, chunks, pace):
        super().__init__(name, chunks, pace)
        self.attempts = 0
        self.errors = []

    def execute(self, ctx):
        self.attempts += 1
        super().execute(ctx)

    def check(self, ctx):
        if self.attempts == 1 and self.received == self.chunks // 2:
            raise OSError("connection reset")

    def restart(self, ctx, error):
        self.errors.append(error)
        return isinstance(error, OSError) and len(self.errors) <= 3


def bar(name, percent):
    filled = round(BAR_WIDTH * percent / 100.0)
    return "%s [%s%s] %3d%%" % (name, "#" * filled, "." * (BAR_WIDTH - filled), percent)


def monitor(manager, tasks, stop, out):
    """Draw a bar per task until *stop* is set, then once more (the final state).

    Return the highest restart count ``task_status()`` showed for each task.
    """
    tty = out.isatty()
    last = None
    restarts = {task.name(): 0 for task in tasks}
    while True:
        done = stop.wait(0.05)
        live = manager.task_status()
        parts = []
        for task in tasks:
            status = live.get(task.name())
            if status is not None:
                restarts[task.name()] = max(restarts[task.name()], status.restarts)
            percent = 100.0 if task.finished.is_set() else status.progress if status else 0.0
            text = bar(task.name(), percent)
            if status is not None and status.status == WorkerStatus.RESTARTED:
                text += " (restarting)"
            parts.append(text)
        line = " | ".join(parts)
        if line != last:
            out.write(("\r" + line) if tty else (line + "\n"))
            out.flush()
            last = line
        if done:
            if tty:
                out.write("\n")
            return restarts


def main():
    # The restart is logged as a WARNING (with its traceback) on stderr.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    manager = TaskManager(
        2, 4, timeout=1.0, restart_backoff=StaticBackoff(0.2), max_restarts=3, name="downloads"
    )
    tasks = [Download("alpha", 10, 0.05), Download("beta", 14, 0.04), FlakyDownload("flaky", 10, 0.05)]
    print("supervising %d tasks on 2..4 workers" % len(tasks))
    ok = True
    try:
        for task in tasks:
            manager.go(task)
        try:
            manager.go(Download("alpha", 1, 0.01))
            print("duplicate accepted: BUG")
            ok = False
        except TaskAlreadyExistsError as exc:
            print("duplicate refused: %s" % exc)

        stop = Event()
        drawer = gevent.spawn(monitor, manager, tasks, stop, sys.stdout)
        all_done = gevent.wait([t.finished for t in tasks], timeout=4.0)
        stop.set()
        restarts = drawer.get()
        if len(all_done) != len(tasks):
            print("not every task finished: BUG")
            return 1

        flaky = tasks[2]
        if flaky.attempts == 2 and [type(e) for e in flaky.errors] == [OSError]:
            print("flaky failed once (OSError: %s) and was restarted" % flaky.errors[0])
        else:
            print("flaky attempts=%d errors=%r: BUG" % (flaky.attempts, flaky.errors))
            ok = False
        # Finished tasks leave task_status(); these are the counts it showed while they ran.
        print("restarts: " + " ".join("%s=%d" % item for item in restarts.items()))
        if restarts != {"alpha": 0, "beta": 0, "flaky": 1}:
            ok = False
        if manager.failed_tasks():
            print("unexpected give-ups: %r" % manager.failed_tasks())
            ok = False
    finally:
        manager.stop(timeout=2.0)
    print("stopped: %d workers left" % len(manager.status()))
    if ok:
        print("ok")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
