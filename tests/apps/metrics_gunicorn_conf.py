"""gunicorn settings of tests/test_metrics_gunicorn.py: greenworks hooks, dead workers marked."""

import os

import greenworks.gunicorn
import greenworks.metrics

bind = os.environ["GW_METRICS_BIND"]
worker_class = "gevent"
workers = 3
graceful_timeout = 5

post_worker_init = greenworks.gunicorn.post_worker_init
worker_int = greenworks.gunicorn.worker_int
worker_exit = greenworks.gunicorn.worker_exit


def child_exit(server, worker):
    greenworks.metrics.mark_process_dead(worker.pid)
