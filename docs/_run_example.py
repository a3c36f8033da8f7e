from zope.interface.registry import Components
from greenworks.runutil import provide_worker, repeat

class Heartbeat:  # a worker configurer: workers() returns the workers to run
    def workers(self):
        return [repeat(5.0, lambda ctx: print("alive", flush=True), start_immediately=True)]

registry = Components("myapp")
provide_worker(registry, Heartbeat())
