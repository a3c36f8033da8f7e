"""Dispatcher.map / imap / imap_unordered: gevent Pool's ordering, failure and backpressure rules."""

import itertools

import gevent
import pytest
from gevent.event import Event
from zope.interface.verify import verifyObject

from greenworks import _greenlets
from greenworks._mapping import MapIterator
from greenworks.dispatcher import Dispatcher
from greenworks.exceptions import InvalidArgument
from greenworks.interfaces import IMapping
from greenworks.testing import settle


@pytest.fixture
def pool():
    d = Dispatcher(4, 0, 4, task_timeout=None, name="mapper")
    d.run()
    yield d
    d.quit()


class Gates:
    """One Event per item: a task ``wait(i)`` returns i once gate i is opened."""

    def __init__(self, count):
        self.events = [Event() for _ in range(count)]
        self.started = []

    def wait(self, i):
        self.started.append(i)
        self.events[i].wait()
        return i

    def open(self, i):
        self.events[i].set()
        settle()


class TestInterface:
    def test_dispatcher_offers_the_mapping_methods(self, pool):
        """A Dispatcher has IMapping's map, imap and imap_unordered."""
        verifyObject(IMapping, pool, tentative=True)


class TestMap:
    def test_map_returns_results_in_input_order(self, pool):
        """map() is the builtin map's list, computed in parallel, over several iterables."""
        assert pool.map(pow, range(10), itertools.repeat(2)) == [i**2 for i in range(10)]

    def test_map_runs_items_in_parallel(self, pool):
        """Four items that each wait for all four to have started finish: they ran at once."""
        everyone = Event()
        started = []

        def meet(i):
            started.append(i)
            if len(started) == 4:
                everyone.set()
            everyone.wait()
            return i

        assert pool.map(meet, range(4)) == [0, 1, 2, 3]

    def test_map_raises_the_first_failure_in_input_order(self, pool):
        """The failure of the earliest failing item is raised, whatever finished first."""

        def check(i):
            if i in (2, 5):
                raise ValueError(i)
            return i

        with pytest.raises(ValueError, match="2"):
            pool.map(check, range(8))

    def test_bad_arguments_are_refused(self, pool):
        """A non-callable fn, no iterable or a maxsize below 1 raise InvalidArgument naming it."""
        with pytest.raises(InvalidArgument, match="fn"):
            pool.map(None, [1])
        with pytest.raises(InvalidArgument, match="iterables"):
            pool.imap(abs)
        with pytest.raises(InvalidArgument, match="maxsize"):
            pool.imap_unordered(abs, [1], maxsize=0)


class TestImap:
    def test_imap_yields_in_input_order_whatever_the_finish_order(self, pool):
        """imap waits for item 0 even when later items finished first."""
        gates = Gates(3)
        with pool.imap(gates.wait, range(3)) as results:
            settle()
            gates.open(2)
            gates.open(1)
            gates.open(0)
            assert list(results) == [0, 1, 2]

    def test_imap_unordered_yields_in_completion_order(self, pool):
        """imap_unordered hands out each result as it comes."""
        gates = Gates(3)
        with pool.imap_unordered(gates.wait, range(3)) as results:
            settle()
            gates.open(2)
            assert next(results) == 2
            gates.open(0)
            assert next(results) == 0
            gates.open(1)
            assert next(results) == 1
            with pytest.raises(StopIteration):
                next(results)

    @pytest.mark.parametrize("method", ["imap", "imap_unordered"])
    def test_failure_is_raised_in_place_and_iteration_goes_on(self, pool, method):
        """A failed item raises its exception when reached; the results after it still come."""

        def check(i):
            if i == 1:
                raise KeyError(i)
            return i

        results = getattr(pool, method)(check, range(3))
        seen = []
        errors = []
        while True:
            try:
                seen.append(next(results))
            except KeyError as exc:
                errors.append(exc)
            except StopIteration:
                break
        assert sorted(seen) == [0, 2] and len(errors) == 1

    @pytest.mark.parametrize("method", ["imap", "imap_unordered"])
    def test_input_error_comes_after_the_results_before_it(self, pool, method):
        """An exception of the input iterable is raised once the items before it were read, and ends it."""

        def source():
            yield 1
            yield 2
            raise OSError("input broke")

        results = getattr(pool, method)(abs, source())
        assert sorted([next(results), next(results)]) == [1, 2]
        with pytest.raises(OSError, match="input broke"):
            next(results)
        with pytest.raises(StopIteration):
            next(results)

    def test_work_starts_before_the_first_next(self, pool):
        """imap starts dispatching at once, not when first read."""
        gates = Gates(2)
        results = pool.imap(gates.wait, range(2))
        settle()
        assert sorted(gates.started) == [0, 1]
        gates.open(0)
        gates.open(1)
        assert list(results) == [0, 1]


class TestBackpressure:
    def test_maxsize_bounds_items_dispatched_and_not_read(self, pool):
        """With maxsize=2 only two items run ahead of the reader; each next() lets one more in."""
        gates = Gates(6)
        for event in gates.events:
            event.set()
        with pool.imap(gates.wait, range(6), maxsize=2) as results:
            settle()
            assert gates.started == [0, 1]
            assert next(results) == 0
            settle()
            assert gates.started == [0, 1, 2]
            assert list(results) == [1, 2, 3, 4, 5]

    def test_a_full_buffer_holds_back_an_endless_input(self):
        """Without maxsize, an endless input is read only as far as the buffer and the workers take."""
        pool = Dispatcher(2, 0, 1, task_timeout=None, name="tight")
        pool.run()
        gate = Event()
        taken = []

        def endless():
            for i in itertools.count():
                taken.append(i)
                yield i

        results = pool.imap(lambda i: gate.wait() and i, endless())
        settle()
        # One item running, two buffered, one waiting for room in the feeder.
        assert len(taken) == 4
        gate.set()
        assert [next(results) for _ in range(10)] == list(range(10))
        results.close()
        pool.quit()

    def test_close_stops_feeding_and_ends_the_feeder(self, pool):
        """close() ends the feeding greenlet; no greenworks greenlet of it is left."""
        gate = Event()
        results = pool.imap(gate.wait, range(100), maxsize=1)
        settle()
        assert [g.name for g in _greenlets.alive() if g.name == "greenworks.mapper.imap"]
        results.close()
        gate.set()
        settle()
        assert not [g for g in _greenlets.alive() if g.name == "greenworks.mapper.imap"]
        with pytest.raises(StopIteration):
            next(results)

    def test_dropped_iterator_kills_its_feeder(self, pool):
        """An iterator dropped unread does not keep its blocked feeder alive."""
        gate = Event()
        results = pool.imap(gate.wait, range(100), maxsize=1)
        assert isinstance(results, MapIterator)
        settle()
        del results
        gevent.sleep(0)
        settle()
        gate.set()
        settle()
        assert not [g for g in _greenlets.alive() if g.name == "greenworks.mapper.imap"]
