"""gunicorn settings for the leadership chaos test: -w 4 gevent workers, the four greenworks hooks."""

import os

import greenworks.gunicorn

bind = os.environ["CHAOS_BIND"]
worker_class = "gevent"
workers = 4
graceful_timeout = 5

post_worker_init = greenworks.gunicorn.post_worker_init
worker_int = greenworks.gunicorn.worker_int
worker_exit = greenworks.gunicorn.worker_exit
child_exit = greenworks.gunicorn.child_exit

logconfig_dict = {
    "root": {"level": "WARNING", "handlers": ["error_console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
        "greenworks": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
    },
}
