"""
`RedisJobStore`: job state in one Redis server, shared by a cluster.

Needs redis-py (``pip install greenworks[redis]``), imported when a store is built.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from zope.interface import implementer

from greenworks import _jobstores_core as core
from greenworks._checks import name as check_name
from greenworks._checks import seconds as check_seconds
from greenworks._jobstores_core import Claim, JobState, LastRun
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import IJobStore

__all__ = ["RedisJobStore"]

_T = TypeVar("_T")

logger = logging.getLogger(__name__)
_default_logger = logger

# KEYS: the job's hash, the id set. ARGV: due, next_due or '', job id.
# Returns {1 claimed | 0 taken | 2 paused, last_due or ''}.
_CLAIM = """
local last = redis.call('hget', KEYS[1], 'last_due')
if redis.call('hget', KEYS[1], 'paused') == '1' then
    return {2, last or ''}
end
if last and tonumber(last) >= tonumber(ARGV[1]) then
    return {0, last}
end
redis.call('hset', KEYS[1], 'last_due', ARGV[1])
if ARGV[2] ~= '' then
    redis.call('hset', KEYS[1], 'next_due', ARGV[2])
end
redis.call('sadd', KEYS[2], ARGV[3])
return {1, ARGV[1]}
"""
# KEYS: the job's hash, the id set. ARGV: next_due or '', job id. Returns HGETALL.
_ADD = """
if redis.call('exists', KEYS[1]) == 0 then
    redis.call('hset', KEYS[1], 'paused', '0')
    if ARGV[1] ~= '' then
        redis.call('hset', KEYS[1], 'next_due', ARGV[1])
    end
end
redis.call('sadd', KEYS[2], ARGV[2])
return redis.call('hgetall', KEYS[1])
"""
_ANSWERS = {1: Claim.CLAIMED, 0: Claim.TAKEN, 2: Claim.PAUSED}


def _import_redis() -> Any:
    try:
        import redis
    except ImportError as exc:
        raise ImportError(
            "greenworks.jobstores.RedisJobStore needs redis-py: pip install 'greenworks[redis]'"
        ) from exc
    return redis


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _fields(reply: Any) -> dict[str, Any]:
    """A hash from HGETALL (a dict) or from a script (a flat list), with str keys and values."""
    if isinstance(reply, dict):
        return {_text(k): _text(v) for k, v in reply.items()}
    items = [_text(v) for v in reply]
    return dict(zip(items[::2], items[1::2], strict=True))


def _state(job: str, fields: dict[str, Any]) -> JobState:
    last_run = None
    if fields.get("run_due"):
        try:
            # from_us may give None and the outcome may be missing: LastRun checks its fields
            # when built, and a record written badly raises below, so ignore the Optionals here.
            last_run = LastRun(
                core.from_us(fields["run_due"]),  # type: ignore[arg-type]
                core.from_us(fields.get("run_started")),  # type: ignore[arg-type]
                float(fields.get("run_duration", "nan")),
                fields.get("run_outcome"),  # type: ignore[arg-type]
                fields.get("run_error"),
            )
        except (ValueError, TypeError):
            last_run = None  # written badly by somebody else: show no outcome rather than fail
    return JobState(
        job,
        core.from_us(fields.get("last_due")),
        core.from_us(fields.get("next_due")),
        fields.get("paused") == "1",
        last_run,
    )


@implementer(IJobStore)
class RedisJobStore:
    """Default implementation of `IJobStore` in one Redis server, for a cluster.

    Each job is a hash ``<prefix>:job:<id>`` (fields ``last_due``,
    ``next_due``, ``paused``, ``run_*``, times in microseconds since the
    epoch) and ``<prefix>:ids`` is the set of ids. `claim` and `add` are Lua
    scripts, so each is one atomic step on the server: among every process
    using the server exactly one wins a due time. `claim_many` pipelines the
    claims into one round trip. The scripts touch two keys, so this needs
    one Redis (a primary, with Sentinel if you like), not Redis Cluster.

    Failure model (the one of `RedisLock`): a Redis or network error never
    raises out of a method; it is logged once per outage and read as the
    safe answer (`Claim.ERROR`, False, None, ``{}``). Durability is Redis's:
    with persistence off, a restart loses the state. This object remembers
    the highest ``last_due`` it has seen per job, so even then this process
    never claims a due time twice (another process, restarted too, could).

    Every method may switch greenlets (one round trip, bounded by the socket
    *timeout*); none blocks the hub under gevent's monkey-patching.

    :param url_or_client: a ``redis.Redis`` client, or a ``redis://``,
        ``rediss://`` or ``unix://`` URL (a client is then built with socket
        timeouts of *timeout* and no retries, so a dead server costs one fast failure).
    :param str prefix: the prefix of every key.
    :keyword float timeout: socket timeout in seconds for a client built from a URL.
    :raises InvalidArgument: for a bad URL, client, prefix or timeout.
    :raises ImportError: redis-py is not installed.
    """

    def __init__(
        self,
        url_or_client: Any,
        prefix: str = "greenworks:jobs",
        *,
        timeout: float = 5.0,
        logger: logging.Logger | None = None,
    ) -> None:
        redis = _import_redis()
        self._prefix = check_name("prefix", prefix)
        timeout = check_seconds("timeout", timeout, positive=True)
        if isinstance(url_or_client, str):
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            try:
                client = redis.Redis.from_url(
                    url_or_client,
                    socket_timeout=timeout,
                    socket_connect_timeout=timeout,
                    retry=Retry(NoBackoff(), 0),
                )
            except ValueError as exc:
                raise invalid_argument(
                    "url_or_client", url_or_client, "a redis://, rediss:// or unix:// URL (%s)" % exc
                ) from None
            self._own_client = True
            self._name = "redis:%s/%s" % (url_or_client, self._prefix)
        elif callable(getattr(url_or_client, "register_script", None)) and callable(
            getattr(url_or_client, "hgetall", None)
        ):
            client = url_or_client
            self._own_client = False
            self._name = "redis:%r/%s" % (client, self._prefix)
        else:
            raise invalid_argument("url_or_client", url_or_client, "a redis.Redis client or a redis:// URL")
        self._client = client
        self._errors = (redis.RedisError, OSError)
        self._claim_script = client.register_script(_CLAIM)
        self._add_script = client.register_script(_ADD)
        self._ids = "%s:ids" % self._prefix
        self._health = core._Health(self._name, logger or _default_logger)
        self._marks = core.Marks()

    @property
    def name(self) -> str:
        return self._name

    @property
    def prefix(self) -> str:
        """The prefix of every key (read-only)."""
        return self._prefix

    @property
    def error(self) -> str | None:
        return self._health.error

    def _key(self, job: str) -> str:
        return "%s:job:%s" % (self._prefix, job)

    def _run(self, operation: str, default: _T, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            result = fn(*args)
        except self._errors as exc:
            self._health.failed(operation, exc)
            return default
        self._health.ok()
        return result

    # -- IJobStore -----------------------------------------------------------------

    def add(self, job_id: str, next_due: Any = None) -> JobState | None:
        job = core.job_id(job_id)
        value = core.to_us("next_due", next_due, none=True)

        def add() -> JobState:
            fields = _fields(self._add_script(keys=[self._key(job), self._ids], args=[value or "", job]))
            self._marks.saw(job, fields.get("last_due"))
            return _state(job, fields)

        return self._run("add", None, add)

    def get(self, job_id: str) -> JobState | None:
        job = core.job_id(job_id)

        def get() -> JobState | None:
            fields = _fields(self._client.hgetall(self._key(job)))
            if not fields:
                return None
            self._marks.saw(job, fields.get("last_due"))
            return _state(job, fields)

        return self._run("get", None, get)

    def states(self) -> dict[str, JobState]:
        def states() -> dict[str, JobState]:
            jobs = sorted(_text(j) for j in self._client.smembers(self._ids))
            pipe = self._client.pipeline(transaction=False)
            for job in jobs:
                pipe.hgetall(self._key(job))
            result = {}
            for job, reply in zip(jobs, pipe.execute(), strict=True):
                fields = _fields(reply)
                if fields:  # the id set can outlive a hash deleted by hand
                    self._marks.saw(job, fields.get("last_due"))
                    result[job] = _state(job, fields)
            return result

        return self._run("states", {}, states)

    def claim(self, job_id: str, due: Any, next_due: Any = None) -> Claim:
        return self.claim_many([(job_id, due, next_due)])[0]

    def claim_many(self, claims: Any) -> list[Claim]:
        items = core.claims(claims)
        answers: list[Claim | None] = [
            Claim.TAKEN if self._marks.settled(job, due) else None for job, due, _ in items
        ]
        asked = [(i, item) for i, item in enumerate(items) if answers[i] is None]
        if not asked:
            # Nothing was asked: no None is left in answers.
            return answers  # type: ignore[return-value]

        def claim() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for _, (job, due, next_due) in asked:
                self._claim_script(
                    keys=[self._key(job), self._ids],
                    args=[due, "" if next_due is None else next_due, job],
                    client=pipe,
                )
            replies: list[Any] = pipe.execute()
            return replies

        replies = self._run("claim", None, claim)
        for n, (i, (job, _, _)) in enumerate(asked):
            if replies is None:
                answers[i] = Claim.ERROR
            else:
                status, last = replies[n]
                self._marks.saw(job, _text(last))
                answers[i] = _ANSWERS[int(status)]
        # Every None was replaced by the loop above.
        return answers  # type: ignore[return-value]

    def _write(self, operation: str, job: str, hset: dict[str, Any], hdel: tuple[str, ...] = ()) -> bool:
        def write() -> bool:
            pipe = self._client.pipeline(transaction=True)
            if hset:
                pipe.hset(self._key(job), mapping=hset)
            if hdel:
                pipe.hdel(self._key(job), *hdel)
            pipe.sadd(self._ids, job)
            pipe.execute()
            return True

        return self._run(operation, False, write)

    def set_next_due(self, job_id: str, next_due: Any) -> bool:
        job = core.job_id(job_id)
        value = core.to_us("next_due", next_due, none=True)
        if value is None:
            return self._write("set_next_due", job, {}, ("next_due",))
        return self._write("set_next_due", job, {"next_due": value})

    def set_paused(self, job_id: str, paused: bool) -> bool:
        job = core.job_id(job_id)
        return self._write("set_paused", job, {"paused": "1" if core.paused(paused) else "0"})

    def record_run(self, job_id: str, last_run: LastRun) -> bool:
        job = core.job_id(job_id)
        run = core.last_run(last_run)
        fields = {
            "run_due": core.to_us("due", run.due),
            "run_started": core.to_us("started_at", run.started_at),
            "run_duration": repr(run.duration),
            "run_outcome": run.outcome,
        }
        if run.error is None:
            return self._write("record_run", job, fields, ("run_error",))
        return self._write("record_run", job, {**fields, "run_error": run.error})

    def remove(self, job_id: str) -> bool:
        job = core.job_id(job_id)

        def remove() -> bool:
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(self._key(job))
            pipe.srem(self._ids, job)
            pipe.execute()
            self._marks.forget(job)
            return True

        return self._run("remove", False, remove)

    def snapshot(self) -> dict[str, Any]:
        return {
            "kind": "redis",
            "name": self.name,
            "error": self.error,
            "errors_total": self._health.errors_total,
        }

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def __repr__(self) -> str:
        return "<greenworks.jobstores.RedisJobStore %s>" % self._name
