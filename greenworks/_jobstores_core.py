"""
What every job store shares: the records (`JobState`, `LastRun`, `Claim`),
argument checks, times as integer microseconds, and `_Health`, the
"log once per outage" part of the failure model.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import logging
from typing import Any

from greenworks._checks import name as check_name
from greenworks._checks import seconds as check_seconds
from greenworks.exceptions import invalid_argument

__all__ = ["Claim", "JobState", "LastRun"]

_UTC = datetime.timezone.utc
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=_UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)
#: Error texts longer than this are cut (a traceback belongs in the log, not the store).
MAX_ERROR_CHARS = 2000
OUTCOMES = ("ok", "error")


class Claim(enum.Enum):
    """The answer of `IJobStore.claim`; only ``CLAIMED`` is true in a boolean context."""

    #: This caller owns the due time: run the job.
    CLAIMED = "claimed"
    #: The due time is at or before the last one recorded: it ran (or runs) here or elsewhere.
    TAKEN = "taken"
    #: The job is paused in the store; nothing was recorded.
    PAUSED = "paused"
    #: The backend failed; nothing was recorded (the safe answer: skip, never run twice).
    ERROR = "error"

    def __bool__(self) -> bool:
        return self is Claim.CLAIMED


@dataclasses.dataclass(frozen=True)
class LastRun:
    """The outcome of a job's last run.

    :ivar datetime due: the due time it ran for (aware UTC).
    :ivar datetime started_at: when it started (aware UTC).
    :ivar float duration: seconds it ran.
    :ivar str outcome: ``"ok"`` or ``"error"``.
    :ivar str error: the error text (cut to `MAX_ERROR_CHARS`), or None.
    """

    due: datetime.datetime
    started_at: datetime.datetime
    duration: float
    outcome: str
    error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "due", to_utc("due", self.due))
        object.__setattr__(self, "started_at", to_utc("started_at", self.started_at))
        object.__setattr__(self, "duration", check_seconds("duration", self.duration))
        if self.outcome not in OUTCOMES:
            raise invalid_argument("outcome", self.outcome, "'ok' or 'error'")
        if self.error is not None:
            if not isinstance(self.error, str):
                raise invalid_argument("error", self.error, "a str or None")
            object.__setattr__(self, "error", self.error[:MAX_ERROR_CHARS])

    def to_dict(self) -> dict[str, Any]:
        """JSON types: times as ISO 8601 strings."""
        return {
            "due": self.due.isoformat(),
            "started_at": self.started_at.isoformat(),
            "duration": self.duration,
            "outcome": self.outcome,
            "error": self.error,
        }


@dataclasses.dataclass(frozen=True)
class JobState:
    """What a store keeps for one job id. Times are aware UTC datetimes or None.

    :ivar str job_id: the job's id.
    :ivar datetime last_due: the last due time claimed for running, or None.
    :ivar datetime next_due: the next due time the runner stored, or None.
    :ivar bool paused: whether the job is paused (cluster-wide, for shared stores).
    :ivar LastRun last_run: the last run's outcome, or None.
    """

    job_id: str
    last_due: datetime.datetime | None = None
    next_due: datetime.datetime | None = None
    paused: bool = False
    last_run: LastRun | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON types: times as ISO 8601 strings."""
        return {
            "job_id": self.job_id,
            "last_due": None if self.last_due is None else self.last_due.isoformat(),
            "next_due": None if self.next_due is None else self.next_due.isoformat(),
            "paused": self.paused,
            "last_run": None if self.last_run is None else self.last_run.to_dict(),
        }


# -- checks and conversions ------------------------------------------------------


def job_id(value: Any) -> str:
    return check_name("job_id", value)


def to_utc(argument: str, value: Any) -> datetime.datetime:
    if not isinstance(value, datetime.datetime) or value.utcoffset() is None:
        raise invalid_argument(argument, value, "an aware datetime")
    return value.astimezone(_UTC)


def to_us(argument: str, value: Any, *, none: bool = False) -> int | None:
    """An aware datetime as exact microseconds since the epoch (None passes with *none*)."""
    if value is None and none:
        return None
    return (to_utc(argument, value) - _EPOCH) // _MICROSECOND


def from_us(value: Any) -> datetime.datetime | None:
    """Microseconds since the epoch (int, or its str/bytes from a backend) as aware UTC, or None."""
    if value is None or value == "" or value == b"":
        return None
    return _EPOCH + datetime.timedelta(microseconds=int(value))


def claims(items: Any) -> list[tuple[str, int, int | None]]:
    """Check ``(job_id, due, next_due)`` items; return them with times in microseconds."""
    try:
        rows = list(items)
    except TypeError:
        raise invalid_argument("claims", items, "an iterable of (job_id, due, next_due)") from None
    checked = []
    for index, row in enumerate(rows):
        if not isinstance(row, tuple) or len(row) not in (2, 3):
            raise invalid_argument("claims[%d]" % index, row, "a tuple (job_id, due[, next_due])")
        next_due = row[2] if len(row) == 3 else None
        due = to_us("due", row[1])
        assert due is not None
        checked.append((job_id(row[0]), due, to_us("next_due", next_due, none=True)))
    return checked


def last_run(value: Any) -> LastRun:
    if not isinstance(value, LastRun):
        raise invalid_argument("last_run", value, "a greenworks.jobstores.LastRun")
    return value


# -- the failure model -----------------------------------------------------------


class _Health:
    """Says a backend outage once (ERROR) and its end once (INFO); counts failed calls."""

    __slots__ = ("error", "errors_total", "_logger", "_name")

    def __init__(self, name: str, logger: logging.Logger) -> None:
        self.error: str | None = None
        self.errors_total = 0
        self._logger = logger
        self._name = name

    def failed(self, operation: str, exc: BaseException) -> None:
        self.errors_total += 1
        if self.error is None:
            self._logger.error(
                "job store %s: %s failed; answering 'not recorded' until the backend is back"
                " (said once per outage)",
                self._name,
                operation,
                exc_info=exc,
            )
        self.error = "%s: %s" % (type(exc).__name__, exc)

    def ok(self) -> None:
        if self.error is not None:
            self._logger.info(
                "job store %s: the backend answers again (%d failed calls)", self._name, self.errors_total
            )
            self.error = None


class Marks:
    """The highest due time this process saw recorded, per job: a claim at or before it is TAKEN at once.

    Saves a round trip for a due time already settled, and keeps this
    process from running a due time twice if the backend lost its data
    (a Redis restarted empty).
    """

    __slots__ = ("_marks",)

    def __init__(self) -> None:
        self._marks: dict[str, int] = {}

    def settled(self, job: str, due: int) -> bool:
        mark = self._marks.get(job)
        return mark is not None and due <= mark

    def saw(self, job: str, last_due: Any) -> None:
        if last_due is None or last_due == "" or last_due == b"":
            return
        value = int(last_due)
        if value > self._marks.get(job, value - 1):
            self._marks[job] = value

    def forget(self, job: str) -> None:
        self._marks.pop(job, None)


def paused(value: Any) -> bool:
    if not isinstance(value, bool):
        raise invalid_argument("paused", value, "a bool")
    return value
