"""gunicorn settings for the example: 2 gevent workers, greenworks hooks, readable logs."""

import os

import greenworks.gunicorn

bind = os.environ.get("GREENWORKS_EXAMPLE_BIND", "127.0.0.1:8000")
worker_class = "gevent"
workers = 2
graceful_timeout = 5

# The three lines that start greenworks in every worker and drain it on exit.
post_worker_init = greenworks.gunicorn.post_worker_init
worker_int = greenworks.gunicorn.worker_int
worker_exit = greenworks.gunicorn.worker_exit

# Show greenworks' INFO lines (consumers starting, claiming, stopping) and the handler's.
logconfig_dict = {
    "root": {"level": "WARNING", "handlers": ["error_console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        "greenworks": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
        "example": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
    },
}
