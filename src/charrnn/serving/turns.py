"""How a served model shares the machine among the requests in flight.

MLflow's scoring server runs each request's predict() in a thread of its own, all at once: seven
large requests would make a small one wait for all of them, and a request the server has already
answered 504 (its timeout) would go on computing. Here one request computes at a time, on every
thread torch has; a generating request hands the turn, every few steps, to the waiting request with
the fewest characters left (the shortest first: a small request waits milliseconds, not for the
large ones to end); a request still computing when the server's timeout has passed stops; and a
large request (above SMALL characters) is refused (HTTP 429) rather than queued for minutes while
MAX_LARGE are in flight, or when the characters in flight and its own would take longer than half
the timeout at the speed measured so far.
"""

import heapq
import itertools
import os
import threading
import time
from contextlib import contextmanager

from charrnn.errors import CharRNNError

SMALL = 1_000  # characters (prime + generated): a request this small is always admitted
MAX_LARGE = 3  # larger requests in flight at once (the server has a few threads for all requests)
SLICE = 16  # generation steps between chances to hand the turn to a smaller request
HEADROOM = 0.5  # admit a large request if the work in flight takes at most this share of the timeout
SMOOTHING = 0.2  # the weight of the newest slice in the speed: one slice slowed (a thread switch, an
# event sent between two of its steps) should not refuse the next large request


class Busy(CharRNNError):
    """Too many large requests in flight: answered 429, retry later."""


class TimedOut(CharRNNError):
    """The server's timeout has passed: it answered 504 already, the work stops."""


class Stopped(CharRNNError):
    """Whoever asked is gone (the play page's tab closed, or Stop): the work stops."""


def server_timeout():
    """The scoring server's own request timeout (MLflow sets it for the server's process)."""
    return float(os.environ.get("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", 60))


class Turns:
    """The requests in flight and whose turn it is to compute."""

    def __init__(self, max_large=MAX_LARGE, timeout=None, max_in_flight=None):
        self.max_large, self.timeout, self.max_in_flight = max_large, timeout, max_in_flight
        self._changed = threading.Condition()
        self._waiting = []  # heap of (characters left, arrival, request)
        self._arrival = itertools.count()
        self._computing = None
        self._admitted = set()
        self.rate = None  # characters per second: the slices computed, newer ones weighing more (SMOOTHING)

    @property
    def large_in_flight(self):
        """The requests in flight over SMALL characters."""
        return sum(request.large for request in self._admitted)

    @contextmanager
    def request(self, cost, stopped=None):
        """A request of `cost` characters, admitted or refused (Busy); yields its Request, whose
        `step` generate() calls after each character. The turn is the request's from entry to exit
        but for the slices it hands to smaller ones. Once the threading.Event `stopped` is set (and
        wake() called), the request stops waiting or computing (Stopped). With `max_in_flight`, a
        request beyond that many admitted ones is refused, small or large (each waits in a thread)."""
        timeout = server_timeout() if self.timeout is None else self.timeout
        request = Request(self, cost, time.monotonic() + timeout, stopped)
        with self._changed:
            if self.max_in_flight is not None and len(self._admitted) >= self.max_in_flight:
                raise Busy(f"the server is busy with {len(self._admitted)} requests; retry later")
            in_flight = self.large_in_flight
            if request.large and in_flight >= (self.max_large if self.rate else 1):  # one until the speed is known
                raise Busy(
                    f"the server is busy with {in_flight} large requests (over {SMALL:,} characters); retry later"
                )
            ahead = sum(other.left for other in self._admitted) + cost
            if request.large and self.rate and ahead / self.rate > HEADROOM * timeout:
                raise Busy(
                    f"the server is busy: {ahead:,} characters to write with this request's, more than it "
                    f"writes in half its timeout of {timeout:g} s; retry later"
                )
            self._admitted.add(request)
        try:
            request.wait_turn()
            yield request
        finally:
            with self._changed:
                if self._computing is request:
                    self._computing = None
                self._waiting = [entry for entry in self._waiting if entry[2] is not request]
                heapq.heapify(self._waiting)
                self._admitted.discard(request)
                self._changed.notify_all()

    def wake(self):
        """Let every waiting request look again (at its `stopped` event)."""
        with self._changed:
            self._changed.notify_all()


class Request:
    def __init__(self, turns, cost, deadline, stopped=None):
        self.turns, self.left, self.deadline, self.steps, self.stopped = turns, cost, deadline, 0, stopped
        self.large = cost > SMALL
        self.slice_start = None

    def wait_turn(self):
        """Queue by characters left, and wait until no one computes and this is the smallest waiting."""
        turns = self.turns
        with turns._changed:
            heapq.heappush(turns._waiting, (self.left, next(turns._arrival), self))
            while turns._computing is not None or turns._waiting[0][2] is not self:
                self._check_stopped()
                if not turns._changed.wait(timeout=max(0.0, self.deadline - time.monotonic())):
                    self._check_deadline()
            heapq.heappop(turns._waiting)
            turns._computing = self
            self.slice_start = None  # the next slice's time starts with its first step

    def step(self, ids=None):
        """After each generated character (generate's on_step): stop past the deadline, and every
        SLICE steps hand the turn to a waiting request with fewer characters left."""
        self.steps += 1
        self.left -= 1
        self._check_stopped()
        if self.steps % SLICE:
            return
        self._check_deadline()
        turns = self.turns
        now = time.monotonic()
        if self.slice_start is not None:
            measured = SLICE / max(now - self.slice_start, 1e-9)
            turns.rate = measured if turns.rate is None else (1 - SMOOTHING) * turns.rate + SMOOTHING * measured
        self.slice_start = now
        with turns._changed:
            if not turns._waiting or turns._waiting[0][0] >= self.left:
                return
            turns._computing = None
            turns._changed.notify_all()
        self.wait_turn()

    def _check_stopped(self):
        if self.stopped is not None and self.stopped.is_set():
            raise Stopped("stopped: whoever asked is gone")

    def _check_deadline(self):
        if time.monotonic() > self.deadline:
            raise TimedOut(
                "the request took longer than the server's timeout (MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT); "
                "ask for fewer characters"
            )
