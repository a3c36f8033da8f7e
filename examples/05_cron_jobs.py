"""Periodic jobs with a JobRunner: Every and Cron schedules, dedupe of slow jobs, results per tick.

The tick is 0.2 s of real time here so the example finishes quickly; in an
application it is 60 s (the default), falling on second 0 of every minute.

- ``heartbeat`` runs every 0.4 s (``Every``), i.e. on every second tick;
- ``per-second`` is a 6-field cron expression (seconds last), due once a second;
- ``slow`` is due on every tick but takes 0.5 s: with ``dedupe=True`` the
  ticks that come while it still runs report it as a skipped duplicate
  instead of starting a second copy.

A tick's Result is posted when its last job finished, so a tick that ran
``slow`` prints after the ticks that came while it ran.

Expected output::

    tick ...: ran [...]
    heartbeat ran ... times, each on a 0.4 s boundary
    per-second cron job ran ... times, each on a whole second
    slow job ran ... times and ... overlapping runs were skipped
    stats: ...
    all checks passed
"""

from gevent import monkey

monkey.patch_all()

import sys

import gevent

from greenworks.jobs import Cron, Every, JobRunner, SkippedDuplicateError, job


def slow():
    gevent.sleep(0.5)
    return "done"


def main():
    runner = JobRunner(limit=10, dedupe=True, tick=0.2, results_buffer=64, name="demo")
    runner.set_jobs(
        [
            job("heartbeat", lambda: "ok", Every(seconds=0.4)),
            job("per-second", lambda: "tock", Cron("* * * * * *")),
            job("slow", slow),
        ]
    )
    ticks = []

    def consume():
        for result in runner.results:  # ends once stop_and_wait() closed the stream
            ticks.append(result)
            ran = sorted(item.id for item in result.items if item.error is None)
            skipped = sorted(
                item.id for item in result.items if isinstance(item.error, SkippedDuplicateError)
            )
            print("tick %s: ran %s skipped %s" % (result.at.strftime("%H:%M:%S.%f")[:-5], ran, skipped))

    consumer = gevent.spawn(consume)
    gevent.sleep(2.1)
    runner.stop_and_wait()
    consumer.join()

    def times(job_id, error=None):
        def matches(item):
            return item.error is None if error is None else isinstance(item.error, error)

        return [r.at for r in ticks for item in r.items if item.id == job_id and matches(item)]

    heartbeat, per_second = times("heartbeat"), times("per-second")
    slow_runs, slow_skips = times("slow"), times("slow", SkippedDuplicateError)
    print("heartbeat ran %d times, each on a 0.4 s boundary" % len(heartbeat))
    print("per-second cron job ran %d times, each on a whole second" % len(per_second))
    print("slow job ran %d times and %d overlapping runs were skipped" % (len(slow_runs), len(slow_skips)))
    stats = runner.stats()
    line = "stats: dedupe_skips_total=%(dedupe_skips_total)d missed_ticks_total=%(missed_ticks_total)d"
    print(line % stats)

    ok = (
        3 <= len(heartbeat) <= 6
        and all(round(at.timestamp() * 1000) % 400 == 0 for at in heartbeat)
        and 1 <= len(per_second) <= 3
        and all(at.microsecond == 0 for at in per_second)
        and len(slow_runs) >= 2
        and len(slow_skips) >= 2
        and stats["dedupe_skips_total"] == len(slow_skips)
        and not [
            item
            for r in ticks
            for item in r.items
            if not (item.error is None or isinstance(item.error, SkippedDuplicateError))
        ]
    )
    print("all checks passed" if ok else "CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
