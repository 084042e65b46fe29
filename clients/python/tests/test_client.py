"""The Python client's decisions and its TokenBrokerClient over a fake transport (what the broker answers is
scripted; the real broker is in test_stack.py). The clock is moved (a fake monotonic clock), never stubbed per call."""

import hashlib
import threading
import time

import pytest

import limitrail_token_broker.client as client_module
from limitrail_token_broker import PROOF_AUDIENCE_HEADER, TokenBrokerClient, TokenBrokerError, sign_identity_proof, sts_url_for
from limitrail_token_broker.policy import BACKOFF_CAP_SEC, backoff_delay_sec, cache_key, min_ttl_seconds_for, refresh_at
from botocore.credentials import ReadOnlyCredentials
from threads import run_threads


def answer(token, expires_in=3600, **extra):
    return {"access_token": token, "token_type": "Bearer", "expires_in": expires_in, "expires_at": "x", "scope": "a b", "client": "limitrail", **extra}


def unavailable(**extra):
    return {"error": "temporarily_unavailable", "error_description": "the token endpoint failed", "status": 503, **extra}


class Scripted:
    """Answers from a script (the last one repeats), records requests, takes ``delay`` seconds per call."""

    def __init__(self, *answers, delay=0.0):
        self.answers = list(answers)
        self.requests = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, request):
        with self.lock:
            self.requests.append(dict(request))
            next_answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        time.sleep(self.delay)
        return next_answer


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def failure(fn):
    with pytest.raises(TokenBrokerError) as caught:
        fn()
    return caught.value


def test_keys_by_client_and_deduplicated_sorted_scopes():
    assert cache_key(None, ["b", "a", "a"]) == cache_key(None, ["a", "b"])
    assert cache_key("other", ["a"]) != cache_key(None, ["a"])
    with pytest.raises(TypeError, match="not one string"):
        cache_key(None, "limitrail.usage.read")
    with pytest.raises(TypeError, match=r'"scopes\[1\]"'):
        cache_key(None, ["a", ""])


def test_policy_margin_and_backoff():
    assert refresh_at(1000.0, 3600, 60) == 4540.0
    assert min_ttl_seconds_for(60) == 60
    assert min_ttl_seconds_for(5000) == 900
    assert backoff_delay_sec(1, 0.0) == 0.0
    assert backoff_delay_sec(1, 0.5) == pytest.approx(0.1)
    assert backoff_delay_sec(3, 0.5) == pytest.approx(0.4)
    assert backoff_delay_sec(30, 0.999) < BACKOFF_CAP_SEC
    assert backoff_delay_sec(1, 0.5, 2) == 2


def test_sts_url_follows_the_brokers_rule():
    assert sts_url_for("eu-central-1", {}) == "https://sts.eu-central-1.amazonaws.com/"
    assert sts_url_for("cn-north-1", {}) == "https://sts.cn-north-1.amazonaws.com.cn/"
    assert sts_url_for("eu-central-1", {"AWS_ENDPOINT_URL_STS": "http://127.0.0.1:4566"}) == "http://127.0.0.1:4566/"
    with pytest.raises(ValueError):
        sts_url_for("", {})


def test_a_proof_signs_the_audience_header_for_sts():
    creds = ReadOnlyCredentials("ASIAEXAMPLE", "secret", "session-token")
    proof = sign_identity_proof(creds, "eu-central-1", "limitrail-token-broker-prod-token", sts_url="https://sts.eu-central-1.amazonaws.com/")
    assert proof["url"] == "https://sts.eu-central-1.amazonaws.com/"
    assert proof["body"] == "Action=GetCallerIdentity&Version=2011-06-15"
    headers = proof["headers"]
    assert headers[PROOF_AUDIENCE_HEADER] == "limitrail-token-broker-prod-token"
    assert headers["x-amz-security-token"] == "session-token"
    assert "/eu-central-1/sts/aws4_request" in headers["authorization"]
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert PROOF_AUDIENCE_HEADER in signed and "host" in signed and "x-amz-date" in signed


def test_asks_with_canonical_scopes_and_reuses_the_token_until_the_margin(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(client_module, "_now", clock)
    transport = Scripted(answer("t1"), answer("t2"))
    broker = TokenBrokerClient(transport, margin_sec=60)
    assert broker.token(["b", "a", "b"]) == "t1"
    assert transport.requests[0] == {"scopes": ["a", "b"], "minTtlSeconds": 60}
    clock.now += 3539
    assert broker.token(["a", "b"]) == "t1"
    clock.now += 1
    assert broker.token(["a", "b"]) == "t2"
    assert len(transport.requests) == 2


def test_keeps_tokens_per_client_name():
    transport = Scripted(answer("t1"), answer("t2"))
    broker = TokenBrokerClient(transport)
    assert broker.token(["a"]) == "t1"
    assert broker.token(["a"], client="other") == "t2"
    assert transport.requests[1]["client"] == "other"


def test_uses_a_stale_answer_once_without_keeping_it():
    transport = Scripted(answer("old", 40, stale=True), answer("new"))
    broker = TokenBrokerClient(transport)
    assert broker.token(["a"]) == "old"
    assert broker.token(["a"]) == "new"




def test_twenty_threads_share_one_broker_call():
    transport = Scripted(answer("t1"), delay=0.2)
    broker = TokenBrokerClient(transport)
    assert run_threads(20, lambda: broker.token(["a"])) == ["t1"] * 20
    assert len(transport.requests) == 1


def test_twenty_threads_share_one_broker_call_whose_answer_is_not_kept():
    # A stale answer (less life than the margin) is used, not cached: the threads that waited for the call get it all
    # the same, as the Node client's concurrent requests share its promise.
    transport = Scripted(answer("old", 40, stale=True), delay=0.2)
    broker = TokenBrokerClient(transport)
    assert run_threads(20, lambda: broker.token(["a"])) == ["old"] * 20
    assert len(transport.requests) == 1
    assert broker.token(["a"]) == "old"
    assert len(transport.requests) == 2  # it was not kept: a later request asks again


def test_after_a_401_twenty_threads_share_one_forced_refresh_whose_answer_is_not_kept():
    transport = Scripted(answer("t1"), answer("t2", 40, stale=True), delay=0.1)
    broker = TokenBrokerClient(transport)
    broker.token(["a"])
    assert run_threads(20, lambda: broker.token_after_401(["a"], "t1")) == ["t2"] * 20
    assert len(transport.requests) == 2
    assert broker.token(["a"]) == "t2"
    assert len(transport.requests) == 3  # not kept


def test_a_thread_waiting_after_a_401_does_not_take_the_rejected_token_from_the_call_it_waited_for(monkeypatch):
    # One thread's call answers the very token another thread's request was just refused with: that thread asks again.
    started = threading.Event()
    release = threading.Event()
    transport = Scripted(answer("t1"), answer("t1", 40, stale=True), answer("t2"))
    inner = transport.__call__

    def slow_first_refresh(request):
        if len(transport.requests) == 1:
            started.set()
            release.wait(5)
        return inner(request)

    broker = TokenBrokerClient(slow_first_refresh)
    broker.token(["a"])
    broker.clear()
    first = threading.Thread(target=broker.token, args=(["a"],))
    first.start()
    assert started.wait(5)
    result = {}
    second = threading.Thread(target=lambda: result.setdefault("token", broker.token_after_401(["a"], "t1")))
    second.start()
    time.sleep(0.1)  # the second thread is waiting for the first one's call
    release.set()
    first.join(5)
    second.join(5)
    assert result == {"token": "t2"}
    assert transport.requests[2]["forceRefresh"] is True


def test_threads_that_waited_share_the_failure_which_is_not_kept():
    transport = Scripted({"error": "access_denied", "error_description": "no grant", "status": 403}, answer("t1"), delay=0.2)
    broker = TokenBrokerClient(transport)
    results = run_threads(10, lambda: broker.token(["a"]))
    assert len(transport.requests) == 1
    assert all(isinstance(r, TokenBrokerError) and r.error == "access_denied" and r.status == 403 for r in results)
    assert len({id(r) for r in results}) == 10  # each thread raised its own copy
    assert broker.token(["a"]) == "t1"


def test_raises_every_error_but_temporarily_unavailable_at_once():
    transport = Scripted({"error": "invalid_scope", "error_description": 'scope "x" is not allowed', "status": 400})
    err = failure(lambda: TokenBrokerClient(transport).token(["x"]))
    assert (err.error, err.status, err.description) == ("invalid_scope", 400, 'scope "x" is not allowed')
    assert str(err) == 'invalid_scope: scope "x" is not allowed'
    assert len(transport.requests) == 1


def test_retries_temporarily_unavailable_until_the_broker_answers():
    transport = Scripted(unavailable(), unavailable(), answer("t1"))
    assert TokenBrokerClient(transport).token(["a"]) == "t1"
    assert len(transport.requests) == 3


def test_gives_up_when_the_next_retry_would_not_fit_before_the_deadline():
    transport = Scripted(unavailable())
    started = time.monotonic()
    err = failure(lambda: TokenBrokerClient(transport, deadline_sec=0.6).token(["a"]))
    assert err.error == "temporarily_unavailable"
    assert time.monotonic() - started < 2.0  # stopped near the deadline, not after more waits
    assert len(transport.requests) >= 2


def test_waits_at_least_retry_after_and_raises_at_once_when_it_is_past_the_deadline():
    waited = Scripted(unavailable(retryAfterSeconds=1), answer("t1"))
    started = time.monotonic()
    assert TokenBrokerClient(waited).token(["a"]) == "t1"
    assert time.monotonic() - started >= 1.0
    refused = Scripted(unavailable(retryAfterSeconds=30))
    err = failure(lambda: TokenBrokerClient(refused).token(["a"]))
    assert err.retry_after_seconds == 30
    assert len(refused.requests) == 1


def test_after_a_401_asks_once_with_force_refresh_and_the_sha256():
    transport = Scripted(answer("t1"), answer("t2"), delay=0.1)
    broker = TokenBrokerClient(transport)
    broker.token(["a"])
    assert run_threads(20, lambda: broker.token_after_401(["a"], "t1")) == ["t2"] * 20
    assert transport.requests[1] == {"scopes": ["a"], "forceRefresh": True, "rejectedTokenSha256": hashlib.sha256(b"t1").hexdigest()}
    assert broker.token(["a"]) == "t2"
    assert len(transport.requests) == 2


def test_refuses_an_unusable_answer_naming_the_field_without_echoing_it():
    transport = Scripted({"access_token": "secret-token-value", "token_type": "Bearer", "expires_in": "soon"})
    broker = TokenBrokerClient(transport)
    err = failure(lambda: broker.token(["a"]))
    assert (err.error, err.status) == ("server_error", 502)
    assert '"expires_in"' in str(err)
    assert "secret-token-value" not in f"{err} {err!r}"


def test_repr_shows_no_token():
    broker = TokenBrokerClient(Scripted(answer("secret-token-value")))
    broker.token(["a"])
    assert "secret-token-value" not in repr(broker)
    assert "secret-token-value" not in repr(vars(broker))  # not even the slots' reprs
