"""The Python client against the real local stack, started by test/integration/python-client.test.ts (``npm test``):
the built broker behind serverless-offline's Lambda Invoke API, moto with signature-checking STS, the LimitRail
sandbox. That file passes the endpoints in LIMITRAIL_TEST_* variables, the granted role's session credentials as the
default chain (AWS_ACCESS_KEY_ID, ...), and a control URL that counts broker invocations (where they arrive) and
upstream requests (at the sandbox), and injects failures. Without those variables these tests are skipped."""

import json
import logging
import os
import urllib.request

import boto3
import pytest
from botocore.config import Config

from limitrail_token_broker import TokenBrokerClient, TokenBrokerError, invoke_transport, url_transport
from threads import run_threads

ENV = os.environ
pytestmark = pytest.mark.skipif("LIMITRAIL_TEST_CONTROL_URL" not in ENV, reason="needs the local stack (npm test starts it)")

TOKENS_SEEN = set()


def control(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(ENV["LIMITRAIL_TEST_CONTROL_URL"] + path, data=data, method="POST" if data else "GET")) as res:
        return json.loads(res.read())


def lambda_client():
    # serverless-offline checks no signature: the proof says who calls.
    return boto3.client(
        "lambda",
        endpoint_url=ENV["LIMITRAIL_TEST_LAMBDA_ENDPOINT"],
        region_name=ENV["LIMITRAIL_TEST_REGION"],
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"total_max_attempts": 1}),
    )


def session_of(prefix):
    return boto3.session.Session(
        aws_access_key_id=ENV[f"{prefix}_ACCESS_KEY_ID"],
        aws_secret_access_key=ENV[f"{prefix}_SECRET_ACCESS_KEY"],
        aws_session_token=ENV[f"{prefix}_SESSION_TOKEN"],
        region_name=ENV["LIMITRAIL_TEST_REGION"],
    )


def granted_broker(**options):
    """The granted role through the default credential chain (its session credentials are in AWS_* variables)."""
    return TokenBrokerClient(invoke_transport(ENV["LIMITRAIL_TEST_FUNCTION_NAME"], lambda_client=lambda_client()), **options)


def remember(token):
    TOKENS_SEEN.add(token)
    return token




def test_twenty_threads_make_one_broker_invocation():
    broker = granted_broker()
    before = control("/stats")
    tokens = run_threads(20, lambda: broker.token(["limitrail.usage.read"]))
    after = control("/stats")
    assert all(isinstance(t, str) for t in tokens), tokens
    assert len(set(tokens)) == 1
    remember(tokens[0])
    assert after["invocations"] - before["invocations"] == 1
    assert after["upstream"] - before["upstream"] == 1
    assert after["sts"] - before["sts"] == 1  # the broker replayed the one proof to STS
    assert broker.token(["limitrail.usage.read"]) == tokens[0]
    assert control("/stats")["invocations"] == after["invocations"]


def test_a_401_makes_exactly_one_forced_refresh_for_twenty_threads():
    broker = granted_broker()
    scopes = ["limitrail.usage.write"]
    first = remember(broker.token(scopes))
    before = control("/stats")
    fresh = run_threads(20, lambda: broker.token_after_401(scopes, first))
    after = control("/stats")
    assert len(set(fresh)) == 1 and fresh[0] != first and isinstance(fresh[0], str), fresh
    remember(fresh[0])
    assert after["forced"] - before["forced"] == 1
    assert after["invocations"] - before["invocations"] == 1
    assert after["upstream"] - before["upstream"] == 1
    assert broker.token(scopes) == fresh[0]


def test_a_503_is_retried_until_the_token_endpoint_comes_back(caplog):
    caplog.set_level(logging.DEBUG)  # botocore's debug lines too: none may show a proof or a token
    broker = granted_broker()
    before = control("/stats")
    control("/endpoint-faults", {"count": 4, "status": 503})  # more than one broker invocation retries (3 attempts)
    token = remember(broker.token(["limitrail.runtime.read"]))
    after = control("/stats")
    assert token.startswith("eyJ")
    assert after["invocations"] - before["invocations"] >= 2
    assert after["upstream"] - before["upstream"] == 5
    assert "temporarily unavailable" in caplog.text
    assert token not in caplog.text
    assert ENV["AWS_SESSION_TOKEN"] not in caplog.text
    assert "Signature=" not in caplog.text


def test_a_refused_grant_is_raised_as_access_denied_at_once():
    before = control("/stats")
    nogrant = TokenBrokerClient(invoke_transport(ENV["LIMITRAIL_TEST_FUNCTION_NAME"], lambda_client=lambda_client(), session=session_of("LIMITRAIL_TEST_NOGRANT")))
    with pytest.raises(TokenBrokerError) as refused:
        nogrant.token(["limitrail.usage.read"])
    assert (refused.value.error, refused.value.status) == ("access_denied", 403)
    assert str(refused.value).startswith("access_denied: ")
    with pytest.raises(TokenBrokerError) as not_granted:
        granted_broker().token([ENV["LIMITRAIL_TEST_UNGRANTED_SCOPE"]])
    assert not_granted.value.error == "access_denied"
    assert control("/stats")["invocations"] - before["invocations"] == 2


def test_a_lambda_function_error_is_raised_as_server_error():
    before = control("/stats")
    control("/function-errors", {"count": 1})
    with pytest.raises(TokenBrokerError) as failed:
        granted_broker().token(["limitrail.usage.read", "limitrail.usage.write"])
    assert (failed.value.error, failed.value.status) == ("server_error", 500)
    assert "Unhandled" in failed.value.description
    assert control("/stats")["invocations"] - before["invocations"] == 1


def test_the_function_url_with_a_sigv4_signed_post():
    url = ENV["LIMITRAIL_TEST_FUNCTION_URL"]
    region = ENV["LIMITRAIL_TEST_REGION"]
    audience = ENV["LIMITRAIL_TEST_FUNCTION_NAME"]
    before = control("/stats")
    granted = TokenBrokerClient(url_transport(url, region, audience, session=session_of("AWS")))
    assert remember(granted.token(["limitrail.usage.read"])).startswith("eyJ")
    assert control("/stats")["url"] - before["url"] == 1
    nogrant = TokenBrokerClient(url_transport(url, region, audience, session=session_of("LIMITRAIL_TEST_NOGRANT")))
    with pytest.raises(TokenBrokerError) as refused:
        nogrant.token(["limitrail.usage.read"])
    assert refused.value.error == "access_denied"


def test_reprs_and_errors_show_no_token_proof_or_credentials():
    broker = granted_broker()
    remember(broker.token(["limitrail.usage.read"]))
    try:
        TokenBrokerClient(invoke_transport(ENV["LIMITRAIL_TEST_FUNCTION_NAME"], lambda_client=lambda_client(), session=session_of("LIMITRAIL_TEST_NOGRANT"))).token(["limitrail.usage.read"])
    except TokenBrokerError as err:
        shown = f"{broker!r} {err} {err!r} {err.__cause__!r} {err.__context__!r}"
    assert len(TOKENS_SEEN) >= 4
    for token in TOKENS_SEEN:
        assert token not in shown
    for secret in (ENV["AWS_SECRET_ACCESS_KEY"], ENV["AWS_SESSION_TOKEN"], ENV["LIMITRAIL_TEST_NOGRANT_SESSION_TOKEN"]):
        assert secret not in shown
    assert "Signature=" not in shown
