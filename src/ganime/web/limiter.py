"""The one rate limiter of `ganime serve`: a token bucket per client, and the request being served (`Visit`).

Requests, rendering (an estimate before, the measured work after), answer bytes and failed logins all spend
the same budget; `security.Guard` charges most of it, `served.Served.charge` and `served.settle` the rest.
A rate-limiting library (e.g. `limits`) counts requests in time windows; what this needs beyond that is
debt for work measured after it was done and a back-off for failed logins, so the bucket stays ours.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections import OrderedDict

WORK_SECONDS_PER_UNIT = 0.01  # measured rendering (generator + encoding, worker CPU) costs 1 unit per 10 ms
AUTH_FAILURE_COST = 5.0  # a wrong token costs 5 units, doubling with each failure in a row (up to the burst)


class RateLimited(Exception):
    """A client spent its budget; retry after `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        self.header = str(max(1, math.ceil(retry_after)))  # Retry-After: whole seconds
        super().__init__(f"too many requests from your address: retry in {self.header} s")


class RateLimiter:
    """A token bucket per client: `rate` units per second, at most `burst` saved up.

    Work measured after the fact (rendering, failed logins) is charged as debt: the bucket may go down to
    -burst, and the client's next requests wait until it has refilled."""

    def __init__(self, rate: float, burst: float, max_clients: int = 10_000) -> None:
        self.rate, self.burst, self.max_clients = rate, max(burst, 1.0), max_clients
        # client -> (units, when, failed logins in a row)
        self._buckets: OrderedDict[str, tuple[float, float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def charge(self, client: str, cost: float, now: float | None = None, debt: bool = False) -> None:
        """Spend `cost` units of `client`'s bucket, or raise RateLimited (spending nothing); with `debt`,
        always spend (the bucket goes negative, down to -burst)."""
        self._spend(client, cost, now, debt)

    def auth_failed(self, client: str, now: float | None = None) -> float:
        """Charge a wrong token as debt: AUTH_FAILURE_COST, doubled for each failure in a row (back-off)."""
        return self._spend(client, None, now, True)

    def auth_succeeded(self, client: str) -> None:
        with self._lock:
            if client in self._buckets:
                units, last, _ = self._buckets[client]
                self._buckets[client] = (units, last, 0)

    def _spend(self, client: str, cost: float | None, now: float | None, debt: bool) -> float:
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            units, last, fails = self._buckets.pop(client, (self.burst, now, 0))
            units = min(self.burst, units + (now - last) * self.rate)
            if cost is None:  # a failed login
                cost = min(self.burst, AUTH_FAILURE_COST * 2 ** min(fails, 30))
                fails += 1
            if cost > units and not debt:
                self._buckets[client] = (units, now, fails)
                # more than a full bucket can never be paid at once: the per-request cap refuses those
                raise RateLimited((min(cost, self.burst) - units) / self.rate)
            self._buckets[client] = (max(-self.burst, units - cost), now, fails)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)  # the least recently seen client
            return cost


class Visit:
    """One request's client and what it has been charged for rendering; `Guard` sets it for the request
    (`current_visit`), so code deep in the app (the batcher's measured work) charges the right client."""

    def __init__(self, client: str, limiter: RateLimiter) -> None:
        self.client, self.limiter, self.render_units = client, limiter, 0.0

    def charge(self, units: float) -> None:
        """Spend rendering units before the work (RateLimited if the budget is spent)."""
        self.limiter.charge(self.client, units)
        self.render_units += units

    def settle(self, seconds: float) -> None:
        """The work took `seconds`: charge what it cost beyond what was paid upfront (as debt)."""
        measured = seconds / WORK_SECONDS_PER_UNIT
        if measured > self.render_units:
            self.limiter.charge(self.client, measured - self.render_units, debt=True)
            self.render_units = measured


_VISIT: contextvars.ContextVar[Visit | None] = contextvars.ContextVar("ganime_visit", default=None)


def current_visit() -> Visit | None:
    """The request being served in this task (None outside `Guard`)."""
    return _VISIT.get()


def current_client() -> str:
    visit = _VISIT.get()
    return visit.client if visit is not None else "-"


def enter_visit(visit: Visit) -> contextvars.Token:
    """Make `visit` the request served by this task (and what it awaits); `leave_visit` undoes it."""
    return _VISIT.set(visit)


def leave_visit(token: contextvars.Token) -> None:
    _VISIT.reset(token)
