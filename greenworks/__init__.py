"""
greenworks: a green-thread runtime for gevent applications.

Re-exports only; each name lives in the module that defines it. Names that
mean different things in different components (``Status``, ``WorkerStatus``,
``Stats``) are left in their modules.
"""

import logging

from greenworks._component import State
from greenworks._version import __version__
from greenworks.backoff import ExponentialBackoff, StaticBackoff
from greenworks.clock import Clock
from greenworks.cluster import ClusterRunner, RedisMembership
from greenworks.context import Context, background, with_cancel, with_deadline, with_timeout
from greenworks.coordination import ClaimResult, FileLock, LocalLock, RedisLock, release_dead, singleton
from greenworks.dispatcher import Dispatcher, RetryTask, TaskStack
from greenworks.exceptions import (
    Canceled,
    DeadlineExceeded,
    EmptyStackError,
    GreenworksError,
    InvalidArgument,
    InvalidScheduleError,
    JobExistsError,
    JobLookupError,
    LockError,
    ManagerStoppedError,
    PanicError,
    ReentrantStopError,
    RunnerClosedError,
    ShuttingDownError,
    SkippedDuplicateError,
    StopTimeoutError,
    TaskAlreadyExistsError,
    WorkerExitedPrematurely,
)
from greenworks.executor import GreenExecutor
from greenworks.jobs import Job, JobResult, JobRunner, Result, job
from greenworks.jobstores import MemoryJobStore, RedisJobStore, SQLiteJobStore
from greenworks.runner import Runner
from greenworks.runutil import (
    DeclarativeWorker,
    job_func,
    named_worker,
    named_worker_from_type,
    provide_worker,
    repeat,
    retry,
    retry_job,
    run_all_jobs,
    run_all_workers,
    run_provided_workers,
    wait,
    worker_func,
)
from greenworks.schedules import AllOf, AnyOf, At, Cron, Every, Interval
from greenworks.supervisor import Child, Supervisor, task_group
from greenworks.taskmanager import TaskManager

# A library never configures logging, but without a handler Python would print
# greenworks' warnings to stderr even when the application chose silence.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AllOf",
    "AnyOf",
    "At",
    "Canceled",
    "Child",
    "ClaimResult",
    "Clock",
    "ClusterRunner",
    "Context",
    "Cron",
    "DeadlineExceeded",
    "DeclarativeWorker",
    "Dispatcher",
    "EmptyStackError",
    "Every",
    "ExponentialBackoff",
    "FileLock",
    "GreenExecutor",
    "GreenworksError",
    "Interval",
    "InvalidArgument",
    "InvalidScheduleError",
    "Job",
    "JobExistsError",
    "JobLookupError",
    "JobResult",
    "JobRunner",
    "LocalLock",
    "LockError",
    "ManagerStoppedError",
    "MemoryJobStore",
    "PanicError",
    "RedisJobStore",
    "RedisLock",
    "RedisMembership",
    "ReentrantStopError",
    "Result",
    "RetryTask",
    "Runner",
    "RunnerClosedError",
    "SQLiteJobStore",
    "ShuttingDownError",
    "SkippedDuplicateError",
    "State",
    "StaticBackoff",
    "StopTimeoutError",
    "Supervisor",
    "TaskAlreadyExistsError",
    "TaskManager",
    "TaskStack",
    "WorkerExitedPrematurely",
    "__version__",
    "background",
    "job",
    "job_func",
    "named_worker",
    "named_worker_from_type",
    "provide_worker",
    "release_dead",
    "repeat",
    "retry",
    "retry_job",
    "run_all_jobs",
    "run_all_workers",
    "run_provided_workers",
    "singleton",
    "task_group",
    "wait",
    "with_cancel",
    "with_deadline",
    "with_timeout",
    "worker_func",
]
