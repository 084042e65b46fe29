"""The client's decisions, as pure functions of their inputs (time and randomness passed in): the cache key of a
request, how long a token may be reused, and how long to wait before retrying ``temporarily_unavailable``.
``TokenBrokerClient`` (client.py) does the I/O around them."""

from __future__ import annotations

from typing import Iterable, List, Optional, Tuple

DEFAULT_MARGIN_SEC = 60.0
DEFAULT_DEADLINE_SEC = 10.0
#: Backoff between retries: full jitter over 0.2 s doubling per attempt, capped at 2 s.
BACKOFF_BASE_SEC = 0.2
BACKOFF_CAP_SEC = 2.0
#: The broker accepts ``minTtlSeconds`` from 0 to 900.
MAX_MIN_TTL_SEC = 900

CacheKey = Tuple[Optional[str], Tuple[str, ...]]


def canonical_scopes(scopes: Iterable[str]) -> List[str]:
    """Deduplicated and sorted, as the broker treats them. A single string is refused (it is not a list of scopes)."""
    if isinstance(scopes, (str, bytes)):
        raise TypeError('"scopes" must be a list of scope strings, not one string')
    listed = list(scopes)
    if not listed:
        raise TypeError('"scopes" must be a non-empty list of scope strings')
    for i, scope in enumerate(listed):
        if not isinstance(scope, str) or not scope:
            raise TypeError(f'"scopes[{i}]" must be a non-empty string')
    return sorted(set(listed))


def cache_key(client: Optional[str], scopes: Iterable[str]) -> CacheKey:
    """One cache entry and one lock per client name and set of scopes."""
    return (client, tuple(canonical_scopes(scopes)))


def refresh_at(asked_at: float, expires_in_sec: float, margin_sec: float) -> float:
    """When a token stops being reused: ``margin_sec`` before it expires. ``expires_in`` counts from the broker's
    answer and ``asked_at`` is when the request was sent (a little earlier), so the estimate errs on the safe side."""
    return asked_at + expires_in_sec - margin_sec


def min_ttl_seconds_for(margin_sec: float) -> int:
    """The least life a token must have left to be worth the broker's answer: the margin, within the broker's bound."""
    return min(int(-(-margin_sec // 1)), MAX_MIN_TTL_SEC)


def backoff_delay_sec(attempt: int, random: float, retry_after_seconds: Optional[float] = None) -> float:
    """Wait before retry number ``attempt`` (1 = the first retry): full jitter, ``random`` in [0, 1). The broker's
    ``retryAfterSeconds``, when it gave one, is a lower bound."""
    jitter = random * min(BACKOFF_CAP_SEC, BACKOFF_BASE_SEC * 2 ** max(0, attempt - 1))
    return max(retry_after_seconds or 0.0, jitter)


def fits_before_deadline(now: float, delay_sec: float, deadline: float) -> bool:
    """Whether a wait of ``delay_sec`` from ``now`` still leaves time for the next attempt before the deadline."""
    return now + delay_sec < deadline
