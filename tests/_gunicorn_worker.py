"""For the tests that start real gunicorn: whether its gevent worker can run here, and how to stop it."""

import os
import signal
import subprocess


def gevent_worker_unavailable():
    """Why gunicorn's gevent worker cannot run here (None if it can).

    gunicorn refuses to load its gevent worker with a gevent older than it
    supports (gunicorn 27 needs gevent 24.10.1), which is what the tox
    gevent-min factor installs.
    """
    try:
        import gunicorn.workers.ggevent  # noqa: F401 - checks its gevent version on import
    except ImportError as exc:
        return "gunicorn is not installed (%s)" % exc
    except RuntimeError as exc:  # e.g. "gevent worker requires gevent 24.10.1 or higher"
        return str(exc)
    return None


def stop_arbiter(proc, timeout=15):
    """SIGTERM the arbiter *proc* (a graceful stop), then SIGKILL whatever of its group is left.

    *proc* must have been started with ``start_new_session=True``; blocks until it was reaped.
    """
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
