"""
Bad input everywhere: every public constructor and method that takes a
duration, a count or a name refuses a bad value at once (issue 14).

Each case runs in a forked child process under a hard 10 s kill: a NaN that
reached the event loop would freeze the whole child (not even a
``gevent.Timeout`` fires), and the parent must still report it. The child
asserts the documented error (an `InvalidArgument`, naming the argument)
arrives within 1 s and that no greenworks greenlet is left alive, and writes
its verdict to a pipe.
"""

import json
import os
import signal
import time

import gevent
import pytest
from gevent.event import Event

import greenworks
from greenworks import _greenlets, runutil
from greenworks.backoff import ExponentialBackoff, StaticBackoff
from greenworks.clock import Clock
from greenworks.context import background, with_cancel, with_deadline, with_timeout
from greenworks.coordination import FileLock, LocalLock, singleton
from greenworks.dispatcher import Dispatcher, RetryTask, TaskStack
from greenworks.exceptions import InvalidArgument
from greenworks.gunicorn import Runtime
from greenworks.jobs import JobRunner, job
from greenworks.runner import Runner
from greenworks.taskmanager import TaskManager
from greenworks.testing import FakeClock, settle

NAN = float("nan")
INF = float("inf")
#: What no duration accepts (``None`` and ``inf`` are added where "no limit" is not meant).
BAD_SECONDS = [NAN, "1", True, object()]
HARD_KILL = 10.0
PROMPT = 1.0


def noop(*args):
    return None


def started_dispatcher():
    return Dispatcher(10, 1, 2).start()


def runner():
    return Runner(lambda task: noop)


def manager():
    return TaskManager(0, 1, None)


def jobrunner():
    return JobRunner(tick=60)


def cases():
    """Yield ``(case id, call, argument named in the message, cleanup or None)``."""
    for value in [*BAD_SECONDS, INF, None]:
        yield "ctx.sleep(%r)" % (value,), lambda v=value: background().sleep(v), "seconds", None
        yield "Clock().sleep(%r)" % (value,), lambda v=value: Clock().sleep(v), "seconds", None
        yield "FakeClock().sleep(%r)" % (value,), lambda v=value: FakeClock().sleep(v), "seconds", None
        yield "call_later(%r)" % (value,), lambda v=value: Clock().call_later(v, noop), "seconds", None
        yield "with_timeout(%r)" % (value,), lambda v=value: with_timeout(None, v), "seconds", None
        yield "StaticBackoff(%r)" % (value,), lambda v=value: StaticBackoff(v), "sleep", None
        yield "ExponentialBackoff(%r)" % (value,), lambda v=value: ExponentialBackoff(v, 10), "initial", None
        yield "repeat(%r)" % (value,), lambda v=value: runutil.repeat(v, noop), "interval", None
        yield "runutil.wait(%r)" % (value,), lambda v=value: runutil.wait(background(), v), "seconds", None
        yield "RetryTask(period=%r)" % (value,), lambda v=value: RetryTask(noop, noop, 1, v), "period", None
        yield (
            "Dispatcher(wait=%r)" % (value,),
            (lambda v=value: Dispatcher(1, 0, 1, wait_between_scale_downs=v)),
            "wait_between_scale_downs",
            None,
        )
        yield (
            "TaskManager(restart_period=%r)" % (value,),
            (lambda v=value: TaskManager(0, 1, None, restart_period=v)),
            "restart_period",
            None,
        )
        yield (
            "TaskManager(schedule_delay=%r)" % (value,),
            (lambda v=value: TaskManager(0, 1, None, schedule_delay=v)),
            "schedule_delay",
            None,
        )
        yield "JobRunner(tick=%r)" % (value,), lambda v=value: JobRunner(tick=v), "tick", None
        yield "Runtime(poll=%r)" % (value,), lambda v=value: Runtime(poll=v), "poll", None
        yield "claim(ttl=%r)" % (value,), lambda v=value: LocalLock().claim("k", v), "ttl", None
    # Where None (and so inf) means "no limit", the other bad values still fail.
    for value in BAD_SECONDS:
        yield "ctx.wait(%r)" % (value,), lambda v=value: with_cancel().wait(v), "timeout", None
        yield "Clock().wait(%r)" % (value,), lambda v=value: Clock().wait(Event(), v), "timeout", None
        yield "FakeClock().wait(%r)" % (value,), lambda v=value: FakeClock().wait(Event(), v), "timeout", None
        yield (
            "Dispatcher(task_timeout=%r)" % (value,),
            (lambda v=value: Dispatcher(1, 0, 1, task_timeout=v)),
            "task_timeout",
            None,
        )
        yield (
            "dispatch(timeout=%r)" % (value,),
            (lambda v=value: started_dispatcher().dispatch(noop, block=True, timeout=v)),
            "timeout",
            "stop",
        )
        yield (
            "Dispatcher.stop(%r)" % (value,),
            lambda v=value: started_dispatcher().stop(v),
            "timeout",
            "stop",
        )
        yield (
            "Runner(stop_timeout=%r)" % (value,),
            lambda v=value: Runner(noop, stop_timeout=v),
            "stop_timeout",
            None,
        )
        yield (
            "apply_tasks(timeout=%r)" % (value,),
            lambda v=value: runner().apply_tasks([], timeout=v),
            "timeout",
            "stop",
        )
        yield "Runner.stop(%r)" % (value,), lambda v=value: runner().stop(v), "timeout", "stop"
        yield "TaskManager(timeout=%r)" % (value,), lambda v=value: TaskManager(0, 1, v), "timeout", None
        yield "TaskManager.stop(%r)" % (value,), lambda v=value: manager().stop(v), "timeout", "stop"
        yield (
            "push(timeout=%r)" % (value,),
            lambda v=value: jobrunner().push([], timeout=v),
            "timeout",
            "stop",
        )
        yield "JobRunner.wait(%r)" % (value,), lambda v=value: jobrunner().wait(v), "timeout", "stop"
        yield "stop_and_wait(%r)" % (value,), lambda v=value: jobrunner().stop_and_wait(v), "timeout", "stop"
        yield (
            "results.get(%r)" % (value,),
            lambda v=value: jobrunner().results.get(timeout=v),
            "timeout",
            "stop",
        )
        yield (
            "JobRunner(leader_ttl=%r)" % (value,),
            lambda v=value: JobRunner(leader_ttl=v),
            "leader_ttl",
            None,
        )
        yield "LocalLock(ttl=%r)" % (value,), lambda v=value: LocalLock(ttl=v), "ttl", None
        yield "singleton(ttl=%r)" % (value,), lambda v=value: singleton(LocalLock(), noop, ttl=v), "ttl", None
    # Counts: a bool, a float, a string, and a value below the minimum.
    for value in [True, 1.5, "2", -1]:
        yield (
            "Dispatcher(max_buffered=%r)" % (value,),
            lambda v=value: Dispatcher(v, 0, 1),
            "max_buffered",
            None,
        )
        yield "Dispatcher(min=%r)" % (value,), lambda v=value: Dispatcher(1, v, 4), "min_workers", None
        yield "TaskManager(min=%r)" % (value,), lambda v=value: TaskManager(v, 4, None), "min_workers", None
        yield "JobRunner(limit=%r)" % (value,), lambda v=value: JobRunner(None, v), "limit", None
        yield (
            "JobRunner(batch_buffer=%r)" % (value,),
            lambda v=value: JobRunner(batch_buffer=v),
            "batch_buffer",
            None,
        )
        yield (
            "TaskManager(max_restarts=%r)" % (value,),
            (lambda v=value: TaskManager(0, 1, None, max_restarts=v)),
            "max_restarts",
            None,
        )
    # Pools that could never run a task.
    yield "Dispatcher(10, 0, 0)", lambda: Dispatcher(10, 0, 0), "max_workers", None
    yield "Dispatcher(10, 5, 2)", lambda: Dispatcher(10, 5, 2), "min_workers", None
    yield "resize(0, 0)", lambda: started_dispatcher().resize(0, 0), "max_workers", "stop"
    yield "JobRunner(limit=0)", lambda: JobRunner(None, 0), "limit", None
    # Names: empty everywhere.
    for value in ["", "   ", 3]:
        yield "named_worker(%r)" % (value,), lambda v=value: runutil.named_worker(v, noop), "name", None
        yield "go_func(%r)" % (value,), lambda v=value: manager().go_func(v, noop), "key", "stop"
        yield "job(%r)" % (value,), lambda v=value: job(v, noop), "id", None
        yield "Dispatcher(name=%r)" % (value,), lambda v=value: Dispatcher(1, 0, 1, name=v), "name", None
        yield "Runner(name=%r)" % (value,), lambda v=value: Runner(noop, name=v), "name", None
        yield "TaskManager(name=%r)" % (value,), lambda v=value: TaskManager(0, 1, None, name=v), "name", None
        yield "JobRunner(name=%r)" % (value,), lambda v=value: JobRunner(name=v), "name", None
    # Raw TypeErrors and AttributeErrors of old.
    yield "with_timeout('x', 1)", lambda: with_timeout("x", 1), "parent", None
    yield "with_deadline(None, nan)", lambda: with_deadline(None, NAN), "deadline", None
    yield "TaskStack(-1)", lambda: TaskStack(-1), "items", None
    yield "FakeClock().advance(nan)", lambda: FakeClock().advance(NAN), "seconds", None
    yield "Clock().sleep_until(nan)", lambda: Clock().sleep_until(NAN), "deadline", None
    yield "FileLock(missing dir)", lambda: FileLock("/nonexistent-dir/greenworks/lock"), "path", None
    yield "singleton(lock, 5)", lambda: singleton(LocalLock(), 5), "worker", None
    yield "JobRunner(timezone='UTC')", lambda: JobRunner(timezone="UTC"), "timezone", None
    yield "submit(5)", lambda: started_dispatcher().submit(5), "fn", "stop"
    yield "add_done_callback(5)", lambda: started_dispatcher().submit(noop).add_done_callback(5), "fn", "stop"
    yield "status.wsgi_app(refresh=nan)", lambda: _wsgi_app(refresh=NAN), "refresh", None
    yield "task_group(timeout=nan)", lambda: _enter_task_group(NAN), "timeout", None
    yield "GreenExecutor(max_workers=0)", lambda: _executor(0), "max_workers", None


def _wsgi_app(**kwargs):
    from greenworks.status import wsgi_app

    return wsgi_app(**kwargs)


def _enter_task_group(timeout):
    with greenworks.task_group(timeout=timeout):
        pass


def _executor(max_workers):
    from greenworks.executor import GreenExecutor

    return GreenExecutor(max_workers)


CASES = list(cases())


def _run_in_child(call):
    """The child's side: call and classify what came out; return a JSON-ready verdict."""
    started = time.monotonic()
    verdict = {"raised": None, "message": None}
    try:
        call()
        verdict["raised"] = "nothing"
    except InvalidArgument as exc:
        verdict["raised"] = "InvalidArgument"
        verdict["message"] = str(exc)
    except BaseException as exc:
        verdict["raised"] = type(exc).__name__
        verdict["message"] = str(exc)
    verdict["seconds"] = time.monotonic() - started
    return verdict


@pytest.mark.timeout(HARD_KILL + 5)
@pytest.mark.parametrize(("case", "call", "argument", "cleanup"), CASES, ids=[c[0] for c in CASES])
def test_bad_value_is_refused_at_once(case, call, argument, cleanup):
    """[issue 14 items 1, 9] The bad value raises InvalidArgument naming its argument within 1 s, in a child
    killed after 10 s if the value froze its event loop; nothing it started stays alive."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns to pytest
        os.close(read)
        code = 0
        try:
            verdict = _run_in_child(call)
            settle()
            leaked = [g.name for g in _greenlets.alive()]
            if cleanup and verdict["raised"] == "InvalidArgument":
                # A component built before the bad call: the check is that the
                # bad call itself left nothing behind beyond the component.
                leaked = []
            verdict["leaked"] = leaked
            os.write(write, json.dumps(verdict).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    deadline = time.monotonic() + HARD_KILL
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        gevent.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read)
        pytest.fail("%s froze its process: killed after %ss" % (case, HARD_KILL))
    with os.fdopen(read, "rb") as pipe:
        raw = pipe.read()
    assert raw, "%s: the child died without a verdict (status %r)" % (case, status)
    verdict = json.loads(raw)
    assert verdict["raised"] == "InvalidArgument", "%s raised %s: %s" % (
        case,
        verdict["raised"],
        verdict["message"],
    )
    assert argument in verdict["message"], "%s: the message does not name %r: %s" % (
        case,
        argument,
        verdict["message"],
    )
    assert verdict["seconds"] < PROMPT, "%s took %.2fs to refuse" % (case, verdict["seconds"])
    assert verdict["leaked"] == [], "%s left greenlets alive: %s" % (case, verdict["leaked"])


def test_the_table_covers_every_component():
    """The table is not empty-handed: each public component and checker family has cases."""
    names = " ".join(case[0] for case in CASES)
    for needle in (
        "Dispatcher",
        "Runner",
        "TaskManager",
        "JobRunner",
        "ctx.sleep",
        "Clock",
        "Backoff",
        "job(",
    ):
        assert needle in names
    assert len(CASES) > 150
