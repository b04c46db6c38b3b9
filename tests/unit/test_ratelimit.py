"""The rate limiter (runner.api.ratelimit) on an injected clock: bursts, refill, refusals that
cost nothing, the draft's header fields, and memory that stays bounded."""

from __future__ import annotations

import pytest

from runner.api.ratelimit import EXECUTE, WEBHOOK, Decision, Limiter, Policy, RateLimits
from runner.settings import Settings


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limiter(requests: int, window: float, max_keys: int = 1000) -> tuple[Limiter, Clock]:
    clock = Clock()
    policy = Policy(EXECUTE, requests, window, "principal")
    return Limiter(policy, max_keys=max_keys, clock=clock), clock


def burst(limit: Limiter, key: str, count: int) -> list[Decision]:
    return [limit.check(key) for _ in range(count)]


def test_a_burst_of_the_quota_is_admitted_and_the_next_request_refused():
    limit, _ = limiter(3, 1.0)
    admitted = burst(limit, "alice", 3)
    assert [d.allowed for d in admitted] == [True, True, True]
    assert [d.remaining for d in admitted] == [2, 1, 0]
    refused = limit.check("alice")
    assert not refused.allowed and refused.remaining == 0
    assert refused.headers()["Retry-After"] == "1"


def test_one_request_comes_back_every_window_over_quota():
    limit, clock = limiter(4, 1.0)  # one back every 0.25 s
    burst(limit, "alice", 4)
    clock.advance(0.2)
    assert not limit.check("alice").allowed
    clock.advance(0.05)
    assert limit.check("alice").allowed
    assert not limit.check("alice").allowed
    clock.advance(1.0)
    assert [d.allowed for d in burst(limit, "alice", 5)] == [True] * 4 + [False]


def test_a_caller_paced_at_the_limit_after_a_burst_is_never_refused():
    limit, clock = limiter(4, 1.0)
    burst(limit, "alice", 4)
    for _ in range(100):
        clock.advance(0.25)
        decision = limit.check("alice")
        assert decision.allowed and decision.remaining == 0


def test_refused_requests_do_not_push_recovery_back():
    limit, clock = limiter(3, 1.0)
    burst(limit, "alice", 3)
    assert not any(d.allowed for d in burst(limit, "alice", 100))
    clock.advance(1 / 3 + 1e-6)
    assert limit.check("alice").allowed


def test_each_key_has_a_quota_of_its_own():
    limit, _ = limiter(2, 60.0)
    burst(limit, ("default", "alice"), 2)
    assert not limit.check(("default", "alice")).allowed
    assert limit.check(("default", "bob")).remaining == 1
    assert limit.check(("other", "alice")).remaining == 1


def test_the_header_fields_follow_the_ratelimit_draft():
    limit, clock = limiter(1, 60.0)
    first = limit.check("alice")
    assert first.headers() == {
        "RateLimit-Policy": '"execute";q=1;w=60',
        "RateLimit": '"execute";r=0;t=60',  # nothing left; one back in 60 s
    }
    clock.advance(30.5)
    refused = limit.check("alice").headers()
    assert refused["RateLimit"] == '"execute";r=0;t=30'
    assert refused["Retry-After"] == "30"  # whole seconds, rounded up, never earlier than t


def test_t_is_the_wait_for_one_more_request_and_never_zero():
    limit, _ = limiter(600, 60.0)  # one back every 0.1 s
    decision = limit.check("alice")
    assert decision.headers()["RateLimit"] == '"execute";r=599;t=1'
    assert 0 < decision.wait_ns <= 100_000_000


def test_a_window_of_a_fraction_of_a_second_is_announced_as_a_whole_one():
    policy = Policy(WEBHOOK, 10, 1.5, "tenant and path")
    assert policy.header == '"webhook";q=10;w=2'


def test_a_flood_of_new_keys_keeps_memory_bounded_and_forgets_the_oldest_first():
    limit, _ = limiter(3, 60.0, max_keys=100)
    for k in range(10_000):
        limit.check(f"path-{k}")
    assert len(limit) == 100
    assert limit.check("path-9999").remaining == 1  # recently seen: remembered
    assert limit.check("path-0").remaining == 2  # long evicted: a fresh quota


def test_keys_idle_until_their_quota_is_full_again_are_dropped():
    limit, clock = limiter(2, 1.0)  # one request owes 0.5 s
    for k in range(100):
        limit.check(f"idle-{k}")
    clock.advance(0.25)  # still owing: kept
    limit.check("busy")
    assert len(limit) == 101
    clock.advance(0.3)  # every idle key's quota is full again
    for _ in range(50):
        limit.check("busy")  # admitted or refused, each check drops idle keys
    assert len(limit) == 1


def test_settings_turn_each_limit_on_or_off():
    settings = Settings.from_env({"DWF_RATE_LIMIT_EXECUTE": "0", "DWF_RATE_LIMIT_WEBHOOK": "3/1s"})
    limits = RateLimits.from_settings(settings)
    assert limits.get(EXECUTE) is None
    webhook = limits.get(WEBHOOK)
    assert webhook is not None and webhook.policy.header == '"webhook";q=3;w=1'
    defaults = RateLimits.from_settings(Settings())
    execute = defaults.get(EXECUTE)
    assert execute is not None and execute.policy.header == '"execute";q=600;w=60'


def test_a_limit_that_cannot_admit_anything_is_refused_with_its_values():
    with pytest.raises(ValueError, match="above 0"):
        Limiter(Policy(EXECUTE, 0, 60.0, "principal"))
    with pytest.raises(ValueError, match="max_keys"):
        Limiter(Policy(EXECUTE, 1, 60.0, "principal"), max_keys=0)
