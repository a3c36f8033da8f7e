"""Shows a supervisor tree: rest_for_one in a pipeline, a transient child, escalation, ordered stop.

The tree::

    root (one_for_one, max 2 restarts in 5 s)
    |-- database                 permanent
    |-- pipeline (rest_for_one)  reader, parser, writer
    |-- flaky-sub (max 1 restart) flaky
    `-- report                   transient

- ``parser`` fails on its first two runs: ``rest_for_one`` restarts it and
  ``writer`` (started after it), never ``reader``.
- ``report`` returns normally: a transient child is not restarted.
- ``flaky`` fails four times: ``flaky-sub`` gives up twice (more than one
  restart), and each time ``root`` restarts it as a failed child; the third
  run of the subtree is steady.
- ``stop()`` stops every child in reverse order of start.

Expected output::

    pipeline: start reader, start parser, parser failed, start writer
    pipeline: stop writer, start parser, parser failed, start writer
    pipeline: stop writer, start parser, start writer
    report ran once: True
    flaky runs: 5; root restarted flaky-sub 2 times
    children of root: database=running pipeline=running flaky-sub=running report=exited
    stop order: flaky, writer, parser, reader, database
    stopped cleanly: True
"""

from gevent import monkey

monkey.patch_all()

from gevent.event import Event

from greenworks.supervisor import Child, Supervisor

log = []
runs = {"parser": 0, "flaky": 0, "report": 0}
steady = {"parser": Event(), "flaky": Event()}


def worker(name):
    def run(ctx):
        log.append("start " + name)
        try:
            ctx.wait()
        finally:
            log.append("stop " + name)

    run.__name__ = name
    return run


def failing_at_first(name, failures):
    def run(ctx):
        runs[name] += 1
        if runs[name] <= failures:
            log.append("start " + name)
            log.append("%s failed" % name)
            raise RuntimeError("%s run %d failed" % (name, runs[name]))
        steady[name].set()
        worker(name)(ctx)

    run.__name__ = name
    return run


def report(ctx):
    runs["report"] += 1


def main():
    pipeline = Supervisor(
        [worker("reader"), failing_at_first("parser", 2), worker("writer")], "rest_for_one", name="pipeline"
    )
    flaky = Supervisor([failing_at_first("flaky", 4)], max_restarts=1, name="flaky-sub")
    root = Supervisor(
        [worker("database"), pipeline, flaky, Child(report, "transient")],
        "one_for_one",
        max_restarts=2,
        period=5.0,
        name="root",
    )
    root.start()
    steady["parser"].wait(5)
    steady["flaky"].wait(5)
    mine = [line for line in log if any(name in line for name in ("reader", "parser", "writer"))]
    # One line per (re)start of the pipeline's children.
    print("pipeline: %s" % ", ".join(mine[:4]))
    print("pipeline: %s" % ", ".join(mine[4:8]))
    print("pipeline: %s" % ", ".join(mine[8:]))
    print("report ran once: %s" % (runs["report"] == 1))
    entry = {c["name"]: c for c in root.snapshot()["children"]}
    restarts = entry["flaky-sub"]["restarts"]
    print("flaky runs: %d; root restarted flaky-sub %d times" % (runs["flaky"], restarts))
    print("children of root: %s" % " ".join("%s=%s" % (n, c["status"]) for n, c in entry.items()))
    del log[:]
    clean = root.stop()
    print("stop order: %s" % ", ".join(line.split()[1] for line in log if line.startswith("stop ")))
    print("stopped cleanly: %s" % clean)


if __name__ == "__main__":
    main()
