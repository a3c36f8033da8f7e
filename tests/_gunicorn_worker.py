"""Whether gunicorn's gevent worker can run here, for the tests that start real gunicorn."""


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
