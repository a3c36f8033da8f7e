"""A status page for running components, served on 127.0.0.1 and read back over HTTP.

A Dispatcher runs fifty small tasks and a TaskManager runs a task that stops at
30% progress. ``greenworks.status.wsgi_app`` serves both at ``/status.json``
and as an HTML page at ``/`` (a card per component, and one of the latest
events); the script fetches both over real HTTP, as a browser or a monitoring
probe would, then stops everything.

Expected output::

    status page on http://127.0.0.1:.../
    dispatcher thumbnails: RUNNING, ... workers, 50 executed
    taskmanager indexer: reindex running at 30% (3 of 10 batches)
    page shows 3 cards: dispatcher, taskmanager, events
    ok
"""

from gevent import monkey

monkey.patch_all()

import json
import re
import sys
import urllib.request

from gevent.event import Event
from gevent.pywsgi import WSGIServer

from greenworks.dispatcher import Dispatcher
from greenworks.status import wsgi_app
from greenworks.taskmanager import TaskManager


class Reindex:
    """A task with progress that does three of its ten batches, then waits to be stopped."""

    def __init__(self):
        self.batches = 0
        self.paused = Event()

    def name(self):
        return "reindex"

    def execute(self, ctx):
        while self.batches < 3:
            self.batches += 1
        self.paused.set()
        ctx.wait()

    def progress(self):
        return 10.0 * self.batches

    def description(self):
        return "%d of 10 batches" % self.batches


def get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode("utf-8")


def main():
    pool = Dispatcher(100, 1, 4, name="thumbnails")
    manager = TaskManager(1, 2, 30.0, name="indexer")
    server = WSGIServer(("127.0.0.1", 0), wsgi_app(pool, manager), log=None)
    task = Reindex()
    try:
        pool.run()
        results = [pool.submit(pow, n, 2) for n in range(50)]
        assert [r.get(timeout=5) for r in results] == [n * n for n in range(50)]
        manager.go(task)
        task.paused.wait(timeout=5)
        server.start()
        url = "http://127.0.0.1:%d/" % server.server_port
        print("status page on %s" % url)

        dispatcher, taskmanager = json.loads(get(url + "status.json"))["components"]
        print(
            "dispatcher %s: %s, %d workers, %d executed"
            % (dispatcher["name"], dispatcher["status"], dispatcher["workers"], dispatcher["executed"])
        )
        (reindex,) = taskmanager["tasks"]
        print(
            "taskmanager %s: %s %s at %.0f%% (%s)"
            % (
                taskmanager["name"],
                reindex["name"],
                reindex["status"],
                reindex["progress"],
                reindex["description"],
            )
        )
        cards = re.findall(r'<section data-component="(\w+)">', get(url))
        print("page shows %d cards: %s" % (len(cards), ", ".join(cards)))
        ok = (
            dispatcher["executed"] == 50
            and reindex["progress"] == 30.0
            and cards == ["dispatcher", "taskmanager", "events"]
        )
    finally:
        server.stop()
        pool.quit()
        manager.stop(timeout=5)
    print("ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
