"""Rate limits (SPEC §12): starts per principal, webhook deliveries per tenant and path.

    ratelimit.install(app, settings)                       # in create_app: app.state.rate_limits
    @router.post("/hooks/{tenant}/{path:path}", responses={**ratelimit.documented()})
    @ratelimit.limited(ratelimit.WEBHOOK, per=lambda tenant, path, **_: (tenant, path))
    async def deliver(request: Request, tenant: str, path: str, ...): ...

A limit is `q` requests per `w` seconds, in bursts of up to `q`, one request's worth coming
back every `w / q` seconds: GCRA (the generic cell rate algorithm: a token bucket kept as one
timestamp per key, the time its bucket is full again). A check is O(1) on the monotonic clock
and runs when the route starts, before it reads or verifies anything (a webhook's body, its
signature), so a flood costs little. Keys whose bucket is full again are dropped, and the table
never holds more than `max_keys` (the least recently used go first): callers varying their
principal or path cannot grow memory without bound.

Every answer of a limited route, errors included, says where its caller stands
(draft-ietf-httpapi-ratelimit-headers, structured fields):

    RateLimit-Policy: "execute";q=600;w=60
    RateLimit: "execute";r=599;t=1      r: requests left; t: seconds until one more comes back

and past the limit the answer is 429 problem+json with `Retry-After` (the same `t`, whole
seconds, at least 1). Limits are per replica, in memory: docs/security.md#rate-limits.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from fastapi import FastAPI, Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.api import problems
from runner.errors import RateLimited
from runner.settings import Settings

#: The policies, by the name their headers carry.
EXECUTE, WEBHOOK = "execute", "webhook"
#: Keys one limiter remembers at most (about 160 bytes each, a hash and a timestamp: 1.6 MB).
DEFAULT_MAX_KEYS = 10_000
#: Idle keys dropped per check, at most: enough to keep up with the keys a check can add.
PRUNE_PER_CHECK = 2
#: The attribute of `request.state` holding a limited request's `Decision`, for the headers.
STATE = "rate_limit"
_NS = 1_000_000_000
#: How a 429 of a limited route is documented (besides its problem document).
REFUSED: dict[str, Any] = {
    "description": "Over the rate limit (per replica; docs/security.md#rate-limits): retry "
    "after `Retry-After` seconds. Every answer of this operation carries the `RateLimit` and "
    "`RateLimit-Policy` fields while the limit is on.",
    "headers": {
        "Retry-After": {
            "description": "Seconds until a retry can be admitted.",
            "schema": {"type": "integer", "minimum": 1},
            "required": True,
        },
        "RateLimit": {
            "description": 'Where the caller stands: `"<policy>";r=<requests left>;'
            "t=<seconds until one more comes back>`.",
            "schema": {"type": "string"},
            "required": True,
        },
        "RateLimit-Policy": {
            "description": 'The limit: `"<policy>";q=<requests>;w=<window seconds>`.',
            "schema": {"type": "string"},
            "required": True,
        },
    },
}

Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True, slots=True)
class Policy:
    """A limit: `requests` per `window` seconds for each `per` (words for messages)."""

    name: str
    requests: int
    window: float
    per: str

    @property
    def header(self) -> str:
        """Its `RateLimit-Policy` item; the draft's window is whole seconds, so rounded up."""
        return f'"{self.name}";q={self.requests};w={max(1, math.ceil(self.window))}'


@dataclass(frozen=True, slots=True)
class Decision:
    """One check's outcome: whether the request may go on, the requests left after it, and
    the nanoseconds until one more would be admitted."""

    policy: Policy
    allowed: bool
    remaining: int
    wait_ns: int

    @property
    def wait_seconds(self) -> int:
        """`wait_ns` in whole seconds, rounded up, at least 1 (what `t` and Retry-After say)."""
        return max(1, -(-self.wait_ns // _NS))

    def headers(self) -> dict[str, str]:
        """The RateLimit fields of the answer, and Retry-After when refused."""
        found = {
            "RateLimit-Policy": self.policy.header,
            "RateLimit": f'"{self.policy.name}";r={self.remaining};t={self.wait_seconds}',
        }
        if not self.allowed:
            found["Retry-After"] = str(self.wait_seconds)
        return found

    def refusal(self) -> RateLimited:
        """The 429 to raise for a refused request."""
        policy = self.policy
        return RateLimited(
            f"over the {policy.name} rate limit of {policy.requests} requests per "
            f"{policy.window:g} s per {policy.per}; retry after {self.wait_seconds} s",
            headers=self.headers(),
        )


class Limiter:
    """One policy over many keys (GCRA): `check(key)` admits a request or refuses it."""

    def __init__(
        self,
        policy: Policy,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if policy.requests < 1 or policy.window <= 0:
            raise ValueError(f"a rate limit needs requests and a window above 0, not {policy}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys}")
        self.policy = policy
        self.max_keys = max_keys
        self._clock = clock
        # Integer nanoseconds: exact sums, so a burst of exactly `requests` always fits.
        self._window = round(policy.window * _NS)
        self._interval = max(1, self._window // policy.requests)
        # A key's hash -> when its bucket is full again (ns); least recently checked first. The
        # hash, not the key: every entry is the same small size, however long a path is (and
        # str hashes are salted per process, so nobody can aim a collision at another's key).
        self._full_at: OrderedDict[int, int] = OrderedDict()

    def __len__(self) -> int:
        """How many keys it remembers."""
        return len(self._full_at)

    def check(self, key: Hashable) -> Decision:
        """Count a request of `key` if it fits in the limit; a refused one is not counted."""
        now = round(self._clock() * _NS)
        slot = hash(key)
        full_at = max(self._full_at.pop(slot, now), now)
        debt = full_at + self._interval - now  # how far ahead the key would be, this one counted
        if debt > self._window:
            self._full_at[slot] = full_at  # moved to the back: recently checked
            decision = Decision(self.policy, False, remaining=0, wait_ns=debt - self._window)
        else:
            self._full_at[slot] = full_at + self._interval
            remaining = (self._window - debt) // self._interval
            next_back = debt - (self._window - (remaining + 1) * self._interval)
            decision = Decision(self.policy, True, remaining=remaining, wait_ns=next_back)
        self._prune(now)
        return decision

    def _prune(self, now: int) -> None:
        # A check adds at most one key and drops up to two idle ones from the front (a full
        # bucket is the same as no entry), so the table follows the keys in use.
        for _ in range(PRUNE_PER_CHECK):
            oldest = next(iter(self._full_at))
            if self._full_at[oldest] > now:
                break
            del self._full_at[oldest]
        while len(self._full_at) > self.max_keys:
            # Under a flood of new keys the least recently checked key forgets its debt.
            self._full_at.popitem(last=False)


class RateLimits:
    """The app's limiters, one per policy whose setting is not off."""

    def __init__(self, limiters: Mapping[str, Limiter]) -> None:
        self._limiters = dict(limiters)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> RateLimits:
        """The limiters `settings.rate_limit_execute` and `rate_limit_webhook` ask for."""
        limiters = {}
        for name, setting, per in (
            (EXECUTE, settings.rate_limit_execute, "principal"),
            (WEBHOOK, settings.rate_limit_webhook, "tenant and path"),
        ):
            if setting is not None:
                requests, window = setting
                policy = Policy(name, requests, window, per)
                limiters[name] = Limiter(policy, max_keys=max_keys, clock=clock)
        return cls(limiters)

    def get(self, name: str) -> Limiter | None:
        """The limiter of policy `name`; None when that limit is off."""
        return self._limiters.get(name)


def limited(name: str, per: Callable[..., Hashable]) -> Callable[[Endpoint], Endpoint]:
    """Limit a route by policy `name`, keyed by `per` called with the route's arguments (as
    keywords). The route must take `request: Request`. Past the limit it raises RateLimited
    (429) before the route runs; within it the route runs and its answer gets the headers."""

    def wrap(endpoint: Endpoint) -> Endpoint:
        if "request" not in inspect.signature(endpoint).parameters:
            raise TypeError(f"{endpoint.__qualname__} needs a `request: Request` parameter")

        # functools.wraps keeps the signature FastAPI reads the route's parameters from.
        @functools.wraps(endpoint)
        async def limited_endpoint(**arguments: Any) -> Any:
            request: Request = arguments["request"]
            limiter = cast(RateLimits, request.app.state.rate_limits).get(name)
            if limiter is not None:
                decision = limiter.check(per(**arguments))
                setattr(request.state, STATE, decision)
                if not decision.allowed:
                    raise decision.refusal()
            return await endpoint(**arguments)

        return cast(Endpoint, limited_endpoint)

    return wrap


class RateLimitHeaders:
    """ASGI middleware: the answer to a limited request carries its RateLimit headers, whatever
    produced it (the route, an error handler)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, adding the headers of the request's `Decision` (if any) as it answers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The request's state lives in the scope; made here so the route writes this very dict.
        state = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            decision = state.get(STATE)
            if message["type"] == "http.response.start" and decision is not None:
                headers = MutableHeaders(scope=message)
                for field, value in decision.headers().items():
                    headers.setdefault(field, value)  # a 429 carries them already
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI, settings: Settings) -> None:
    """Give `app` its limiters (`app.state.rate_limits`, from `settings`) and the middleware
    that puts the RateLimit headers on the answers of limited routes."""
    app.state.rate_limits = RateLimits.from_settings(settings)
    app.add_middleware(RateLimitHeaders)


def documented() -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` of a limited route: its 429, with the headers it carries."""
    return {429: problems.documented(429)[429] | REFUSED}
