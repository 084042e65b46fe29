"""``TokenBrokerClient``: LimitRail tokens from the broker, kept in memory per client object until ``margin_sec``
before they expire, one broker call per key however many threads ask at once (one lock per key: the first thread
asks, the others wait for its outcome, a token, cached or not, or its failure), ``temporarily_unavailable`` retried
with capped exponential backoff and full jitter within ``deadline_sec`` (which also bounds each attempt: the
transport is given the time left), and one forced refresh after LimitRail rejects a token with 401."""

from __future__ import annotations

import hashlib
import inspect
import logging
import random
import threading
import time
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

from .errors import TokenBrokerError, token_answer_of
from .policy import (
    DEFAULT_DEADLINE_SEC,
    DEFAULT_MARGIN_SEC,
    CacheKey,
    backoff_delay_sec,
    cache_key,
    canonical_scopes,
    fits_before_deadline,
    min_ttl_seconds_for,
    refresh_at,
)
from .transports import Transport

log = logging.getLogger("limitrail_token_broker")

# The clock of every decision here (monotonic: a wall-clock step never makes a token look fresh).
_now = time.monotonic
_sleep = time.sleep
#: The least time an attempt is given (an attempt starts only while time is left; this keeps its timeout above 0).
_MIN_ATTEMPT_SEC = 0.001


class _Slot:
    """One key's state. ``entry`` is replaced as a whole (token, refresh time), so a lock-free read sees a pair."""

    __slots__ = ("lock", "entry", "generation", "token", "failure")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entry: Optional[Tuple[str, float]] = None
        #: Broker calls finished for this key; a thread that waited for the lock compares it with what it saw before.
        self.generation = 0
        #: The last call's outcome, for the threads that waited for it (those that saw an older generation): its
        #: token, also when it is not cached (a ``stale`` answer, less than the margin left), or its failure.
        self.token: Optional[str] = None
        self.failure: Optional[TokenBrokerError] = None

    def fresh(self) -> Optional[str]:
        entry = self.entry
        return entry[0] if entry is not None and _now() < entry[1] else None


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _accepts_timeout_sec(transport: Transport) -> bool:
    """Whether the transport takes ``timeout_sec`` (both of this package's do); one that does not is called with the
    request only, and its own timeouts apply."""
    try:
        parameters = inspect.signature(transport).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        or (p.name == "timeout_sec" and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))
        for p in parameters
    )


class TokenBrokerClient:
    """``TokenBrokerClient(invoke_transport("limitrail-token-broker-prod-token"))``; thread-safe."""

    def __init__(self, transport: Transport, margin_sec: float = DEFAULT_MARGIN_SEC, deadline_sec: float = DEFAULT_DEADLINE_SEC):
        if not callable(transport):
            raise TypeError('"transport" must be invoke_transport(...) or url_transport(...)')
        if not isinstance(margin_sec, (int, float)) or margin_sec < 0:
            raise ValueError('"margin_sec" must be a number of seconds, at least 0')
        if not isinstance(deadline_sec, (int, float)) or deadline_sec <= 0:
            raise ValueError('"deadline_sec" must be a number of seconds above 0')
        self._transport = transport
        self._gives_timeout = _accepts_timeout_sec(transport)
        self._margin_sec = float(margin_sec)
        self._deadline_sec = float(deadline_sec)
        self._slots: Dict[CacheKey, _Slot] = {}
        self._slots_lock = threading.Lock()

    def token(self, scopes: Iterable[str], client: Optional[str] = None) -> str:
        """A bearer token for these scopes: from memory while it has more than ``margin_sec`` left, else from the broker."""
        scopes = canonical_scopes(scopes)
        slot = self._slot(cache_key(client, scopes))
        token = slot.fresh()
        if token is not None:
            return token
        seen = slot.generation
        with slot.lock:
            token = slot.fresh() or self._shared_outcome(slot, seen)
            if token is not None:
                return token
            request = {**self._base(scopes, client), "minTtlSeconds": min_ttl_seconds_for(self._margin_sec)}
            return self._ask(slot, request)

    def token_after_401(self, scopes: Iterable[str], rejected: str, client: Optional[str] = None) -> str:
        """After LimitRail answered 401 to ``rejected``: drops it and asks the broker for a token that is not it
        (``forceRefresh`` with the rejected token's SHA-256). If another thread already replaced it, that token is
        answered without a broker call. Call it once per rejected request: retry that request once, never in a loop."""
        if not isinstance(rejected, str) or not rejected:
            raise TypeError('"rejected" must be the token LimitRail rejected')
        scopes = canonical_scopes(scopes)
        slot = self._slot(cache_key(client, scopes))
        token = slot.fresh()
        if token is not None and token != rejected:
            return token
        seen = slot.generation
        with slot.lock:
            token = slot.fresh()
            if token is not None and token != rejected:
                return token
            token = self._shared_outcome(slot, seen, rejected)
            if token is not None:
                return token
            slot.entry = None
            request = {**self._base(scopes, client), "forceRefresh": True, "rejectedTokenSha256": _sha256_hex(rejected)}
            return self._ask(slot, request)

    def clear(self) -> None:
        """Forgets every cached token (they stay valid upstream; the next request asks the broker)."""
        with self._slots_lock:
            for slot in self._slots.values():
                slot.entry = None

    def __repr__(self) -> str:
        return f"TokenBrokerClient({self._transport!r}, margin_sec={self._margin_sec:g}, deadline_sec={self._deadline_sec:g})"

    def _slot(self, key: CacheKey) -> _Slot:
        with self._slots_lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot()
            return slot

    @staticmethod
    def _base(scopes: list, client: Optional[str]) -> Dict[str, Any]:
        return {"scopes": scopes} if client is None else {"scopes": scopes, "client": client}

    @staticmethod
    def _shared_outcome(slot: _Slot, seen: int, rejected: Optional[str] = None) -> Optional[str]:
        """When a call finished while this thread waited for the lock, its outcome is this thread's too (as concurrent
        Node requests share one promise): its token (unless it is the token this thread's request was refused with),
        or its failure, raised here. None: no such call, this thread asks the broker itself."""
        if slot.generation == seen:
            return None
        if slot.failure is not None:
            raise slot.failure.copy()
        return slot.token if slot.token is not None and slot.token != rejected else None

    def _ask(self, slot: _Slot, request: Mapping[str, Any]) -> str:
        """One broker call (the caller holds the slot's lock), retried on ``temporarily_unavailable`` while the next
        attempt fits before the deadline. Records the outcome for the threads waiting on the lock."""
        try:
            token, until = self._ask_with_retries(request)
        except TokenBrokerError as err:
            slot.token, slot.failure = None, err
            slot.generation += 1
            raise
        except BaseException:
            # Not the broker's answer (no credentials, a bug): the waiting threads try for themselves.
            slot.token, slot.failure = None, None
            slot.generation += 1
            raise
        # A token with less than the margin left (a ``stale`` answer while the endpoint fails) is not kept: it goes
        # to this request and to those that waited for it, and the next request asks again.
        slot.entry = (token, until) if until > _now() else None
        slot.token, slot.failure = token, None
        slot.generation += 1
        return token

    def _ask_with_retries(self, request: Mapping[str, Any]) -> Tuple[str, float]:
        deadline = _now() + self._deadline_sec
        attempt = 0
        while True:
            attempt += 1
            asked_at = _now()
            try:
                if self._gives_timeout:
                    # The deadline bounds this attempt too: the transport gives up when the time left has passed.
                    answer = token_answer_of(self._transport(request, timeout_sec=max(deadline - asked_at, _MIN_ATTEMPT_SEC)))
                else:
                    answer = token_answer_of(self._transport(request))
            except TokenBrokerError as err:
                if not err.retryable:
                    raise
                delay = backoff_delay_sec(attempt, random.random(), err.retry_after_seconds)
                if not fits_before_deadline(_now(), delay, deadline):
                    raise
                log.info("token broker temporarily unavailable (%s); retry %d in %.0f ms", err.description, attempt, delay * 1000)
                _sleep(delay)
                continue
            return answer["access_token"], refresh_at(asked_at, float(answer["expires_in"]), self._margin_sec)
