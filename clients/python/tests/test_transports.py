"""The transports against loopback servers that fail as the Lambda API or a Function URL can: a closed port (nothing
listening), and a server that takes the connection and never answers. No AWS: the proofs are signed with made-up
credentials and never sent."""

import os
import socket
import threading
from contextlib import contextmanager

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import NoCredentialsError

import limitrail_token_broker.client as client_module
import limitrail_token_broker.transports as transports_module
from limitrail_token_broker import TokenBrokerClient, TokenBrokerError, invoke_transport, url_transport
from threads import run_threads

REGION = "eu-central-1"
FUNCTION = "limitrail-token-broker-test-token"
REQUEST = {"scopes": ["limitrail.usage.read"]}


def session():
    return boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="not-a-secret", aws_session_token="not-a-token", region_name=REGION
    )


@pytest.fixture(autouse=True)
def no_aws_environment(monkeypatch):
    """No credentials, endpoints or profiles from the machine: the tests pass theirs."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")


def closed_port_url():
    """A loopback URL nothing listens on: every connection is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextmanager
def silent_server():
    """A loopback server whose kernel takes every connection (the backlog) and that never reads or answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(128)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def lambda_client_at(url, attempts=1):
    return session().client("lambda", endpoint_url=url, config=Config(retries={"total_max_attempts": attempts}))


def outcome_within(fn, seconds=15.0):
    """What ``fn()`` returned or raised, run on a daemon thread; fails the test if it is still running after ``seconds``
    (a generous bound: the test asserts that the call ends, not how fast)."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - the test inspects it
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds:g} s"
    return box


def unavailable_error(box):
    err = box.get("error")
    assert isinstance(err, TokenBrokerError), f"expected TokenBrokerError, got {box!r}"
    assert (err.error, err.status) == ("temporarily_unavailable", 503)
    return err




# The Function URL: https, or plain http to loopback only.


@pytest.mark.parametrize(
    "url",
    [
        "http://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-central-1.on.aws/",
        "http://10.0.0.7:8080/",
        "http://127.0.0.1.nip.io/",
        "http://localhost.example/",
        "http://[::2]/",
        "ftp://127.0.0.1/",
    ],
)
def test_url_transport_refuses_a_plain_http_function_url_to_any_host_but_loopback(url):
    with pytest.raises(ValueError, match=r"must be https \(plain http only to a loopback host: 127\.0\.0\.0/8, ::1, localhost\).*in clear"):
        url_transport(url, REGION, FUNCTION, session=session())
    with pytest.raises(ValueError, match="must be an absolute URL"):
        url_transport("not a url", REGION, FUNCTION, session=session())


def test_url_transport_accepts_https_anywhere_and_plain_http_to_loopback():
    for url in [
        "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-central-1.on.aws/",
        "http://127.0.0.1:9000/",
        "http://127.45.6.7/",
        "http://[::1]:8080/",
        "http://localhost:3000/",
        "http://LOCALHOST:3000/",
    ]:
        assert callable(url_transport(url, REGION, FUNCTION, session=session())), url


class Counting:
    """A transport that counts its calls and passes them on."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, request, **options):
        with self.lock:
            self.calls += 1
        return self.inner(request, **options)


# An unreachable Lambda API or Function URL: temporarily_unavailable, never a raw botocore exception.


def test_an_unreachable_lambda_api_is_temporarily_unavailable():
    transport = invoke_transport(FUNCTION, lambda_client=lambda_client_at(closed_port_url()), session=session())
    err = unavailable_error(outcome_within(lambda: transport(REQUEST)))
    assert "unreachable" in err.description and "EndpointConnectionError" in err.description


def test_an_unreachable_lambda_api_through_the_default_client_is_temporarily_unavailable(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", closed_port_url())
    transport = invoke_transport(FUNCTION, session=session())
    unavailable_error(outcome_within(lambda: transport(REQUEST)))


def test_an_unreachable_function_url_is_temporarily_unavailable():
    transport = url_transport(closed_port_url() + "/", REGION, FUNCTION, session=session())
    err = unavailable_error(outcome_within(lambda: transport(REQUEST)))
    assert "unreachable" in err.description and "EndpointConnectionError" in err.description


def test_an_unreachable_lambda_api_is_retried_and_its_failure_shared_with_the_waiting_threads(monkeypatch):
    # Backoff at the top of its jitter: waits of about 0.2 s and 0.4 s, so within 0.5 s exactly 2 attempts per call.
    monkeypatch.setattr(client_module.random, "random", lambda: 0.999)
    transport = Counting(invoke_transport(FUNCTION, lambda_client=lambda_client_at(closed_port_url()), session=session()))
    broker = TokenBrokerClient(transport, deadline_sec=0.5)
    results = run_threads(20, lambda: broker.token(["limitrail.usage.read"]))
    assert all(isinstance(r, TokenBrokerError) and r.error == "temporarily_unavailable" for r in results), results
    assert transport.calls == 2  # one call for the 20 threads, retried once


def test_a_lambda_client_without_credentials_raises_the_credential_error_as_it_is():
    # The proofs are signed (the session has credentials); the Lambda client has none: no retry would fix that, and
    # it is the caller's to fix, so it is raised as it is (as the Node client throws the SDK's), not retried.
    client = boto3.session.Session(region_name=REGION).client("lambda", endpoint_url=closed_port_url())
    transport = invoke_transport(FUNCTION, lambda_client=client, session=session())
    with pytest.raises(NoCredentialsError):
        transport(REQUEST)
    with pytest.raises(NoCredentialsError):
        TokenBrokerClient(transport).token(["limitrail.usage.read"])


# The deadline bounds an attempt already running: a broker that never answers is given up by the deadline.


def test_a_lambda_api_that_never_answers_is_given_up_by_the_deadline(monkeypatch):
    with silent_server() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", url)
        broker = TokenBrokerClient(invoke_transport(FUNCTION, session=session()), deadline_sec=0.3)
        unavailable_error(outcome_within(lambda: broker.token(["limitrail.usage.read"])))


def test_a_function_url_that_never_answers_is_given_up_by_the_deadline():
    with silent_server() as url:
        broker = TokenBrokerClient(url_transport(url + "/", REGION, FUNCTION, session=session()), deadline_sec=0.3)
        unavailable_error(outcome_within(lambda: broker.token(["limitrail.usage.read"])))


def test_the_client_gives_each_attempt_the_time_left_before_the_deadline():
    seen = []

    def transport(request, timeout_sec=None):
        seen.append(timeout_sec)
        return {"error": "temporarily_unavailable", "error_description": "down", "status": 503}

    err = outcome_within(lambda: TokenBrokerClient(transport, deadline_sec=0.5).token(["a"]))["error"]
    assert err.error == "temporarily_unavailable"
    assert len(seen) >= 2
    assert all(isinstance(t, float) and 0 < t <= 0.5 for t in seen), seen
    assert seen == sorted(seen, reverse=True)


def test_a_transport_without_timeout_sec_is_called_with_the_request_only():
    seen = []

    def transport(request):
        seen.append(dict(request))
        return {"access_token": "t1", "token_type": "Bearer", "expires_in": 3600}

    assert TokenBrokerClient(transport).token(["a"]) == "t1"
    assert seen == [{"scopes": ["a"], "minTtlSeconds": 60}]


def test_a_client_made_for_an_attempts_time_is_used_again_while_its_timeouts_fit_the_time_left():
    made = []

    def make(timeout):
        made.append(timeout)
        return object()

    clients = transports_module._ByTimeout(make)
    first = clients(9.99)
    assert clients(9.999) is first  # the next request's first attempt
    assert clients(9.5) is not first  # a retry, with less time left: its timeouts would outlast the deadline
    assert clients(None) is clients(30.0)  # without a deadline: the transport's own 20 s
    assert made == [20.0, 9.99, 9.5, 20.0]
