"""The two ways to reach the broker, each attaching a fresh identity proof to every request:

- ``invoke_transport``: the Lambda Invoke API (``lambda:InvokeFunction``);
- ``url_transport``: the Function URL (AuthType AWS_IAM), a SigV4-signed POST (service ``lambda``).

A transport is called with the token request (a dict) and, from ``TokenBrokerClient``, ``timeout_sec``: the time
left before the client's deadline, after which the attempt is given up. It returns the broker's JSON answer as it
came (``TokenBrokerClient`` checks it). It raises ``TokenBrokerError`` for what kept the answer from coming: a Lambda
function error is ``server_error``; an unreachable, throttling or silent API (no connection, a broken one, no answer
in time) ``temporarily_unavailable`` (retried); a refused invoke ``access_denied``. botocore's errors about the
caller's own set-up (no or bad credentials, a region or parameter it refuses) are raised as they are: no retry fixes
them. Their reprs name the function or URL and the audience, never credentials."""

from __future__ import annotations

import ipaddress
import json
import re
import threading
from urllib.parse import urlsplit
from typing import Any, Callable, Generic, Mapping, Optional, TypeVar

import boto3
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import CapacityNotAvailableError, ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.httpsession import URLLib3Session

from .errors import ACCESS_DENIED, INVALID_REQUEST, SERVER_ERROR, TEMPORARILY_UNAVAILABLE, TokenBrokerError
from .proof import quiet, sign, sign_identity_proof

#: ``transport(request)``, or ``transport(request, timeout_sec=...)`` when it takes ``timeout_sec`` (both of these do).
Transport = Callable[..., Any]

#: A call that gets no answer within this long is given up (the broker's own limit is 15 s); from
#: ``TokenBrokerClient``, the time left before its deadline when that is shorter.
REQUEST_TIMEOUT_SEC = 20.0
#: The longest wait for a connection (within the attempt's time).
CONNECT_TIMEOUT_SEC = 5.0
#: A client or HTTP session made for an attempt's timeout is used again while its timeout is at most the time left
#: and no more than this below it (botocore fixes timeouts when it makes them).
REUSE_SLACK_SEC = 1.0

#: botocore's errors that mean the call did not get through or its answer was lost: no connection (refused, DNS,
#: proxy, TLS, connect timeout), a broken one, no answer in time, an incomplete answer, botocore's own retry quota.
#: Everything else botocore raises (no or bad credentials, a region or parameter it refuses) is the caller's to fix.
UNREACHABLE_ERRORS = (BotocoreConnectionError, HTTPClientError, IncompleteReadError, CapacityNotAvailableError)

_T = TypeVar("_T")


def function_name_of(name_or_arn: str) -> str:
    """The function's name from any form Lambda accepts: name, ``name:qualifier``, full or partial ARN."""
    match = re.search(r"(?:^|:)function:([^:]+)", name_or_arn)
    return match.group(1) if match else name_or_arn.split(":")[0]


def _unavailable(description: str) -> TokenBrokerError:
    return TokenBrokerError(TEMPORARILY_UNAVAILABLE, 503, description)


def _attempt_timeout(timeout_sec: Optional[float]) -> float:
    return REQUEST_TIMEOUT_SEC if timeout_sec is None else min(float(timeout_sec), REQUEST_TIMEOUT_SEC)


class _ByTimeout(Generic[_T]):
    """Something whose timeouts are fixed when it is made (a botocore client, an HTTP session), for an attempt with
    ``timeout_sec`` left: the one kept while its timeout fits (at most the time left, at most ``REUSE_SLACK_SEC``
    below it), else a new one, which is kept instead. Thread-safe. One replaced is not closed (another thread may be
    using it); it is released with its last user."""

    def __init__(self, make: Callable[[float], _T]):
        self._make = make
        self._lock = threading.Lock()
        self._timeout = REQUEST_TIMEOUT_SEC
        self._made = make(REQUEST_TIMEOUT_SEC)

    def __call__(self, timeout_sec: Optional[float]) -> _T:
        timeout = _attempt_timeout(timeout_sec)
        with self._lock:
            if not timeout - REUSE_SLACK_SEC <= self._timeout <= timeout:
                self._made, self._timeout = self._make(timeout), timeout
            return self._made


def _frozen_credentials(session: boto3.session.Session):
    """The session's current credentials (a refreshing provider refreshes them here as they near expiry)."""
    credentials = session.get_credentials()
    return None if credentials is None else credentials.get_frozen_credentials()


def invoke_failure(err: ClientError) -> TokenBrokerError:
    """What a refused Invoke call means for the caller. Lambda's errors name the caller and the function, never the payload."""
    code = err.response.get("Error", {}).get("Code", "Error")
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
    what = f"{code}: {err.response.get('Error', {}).get('Message', '')}".rstrip(": ")
    if status == 429 or status >= 500:
        return _unavailable(f"the Lambda API is unavailable ({what})")
    if status in (401, 403):
        return TokenBrokerError(
            ACCESS_DENIED, 403, f"Lambda refused the invoke ({what}); the caller's role needs lambda:InvokeFunction on the token function"
        )
    return TokenBrokerError(INVALID_REQUEST, status, f"Lambda refused the invoke ({what})")


def _default_lambda_client(session: boto3.session.Session, timeout: float) -> Any:
    """The transport's own Lambda client: one attempt per call (``TokenBrokerClient`` retries, within its deadline),
    which gives up after ``timeout`` seconds without a connection or an answer."""
    return session.client(
        "lambda",
        config=Config(
            connect_timeout=min(CONNECT_TIMEOUT_SEC, timeout), read_timeout=timeout, retries={"total_max_attempts": 1, "mode": "standard"}
        ),
    )


class _InvokeTransport:
    def __init__(
        self, function_name: str, lambda_client: Callable[[Optional[float]], Any], session: boto3.session.Session, audience: str, region: Optional[str]
    ):
        self._function_name = function_name
        self._lambda = lambda_client
        self._session = session
        self._audience = audience
        self._region = region

    def __call__(self, request: Mapping[str, Any], timeout_sec: Optional[float] = None) -> Any:
        lambda_client = self._lambda(timeout_sec)
        region = self._region or lambda_client.meta.region_name
        proof = sign_identity_proof(_frozen_credentials(self._session), region, self._audience)
        payload = json.dumps({**request, "identityProof": proof}).encode("utf-8")
        try:
            with quiet():
                out = lambda_client.invoke(FunctionName=self._function_name, Payload=payload)
                body = out["Payload"].read()
        except ClientError as err:
            raise invoke_failure(err) from None
        except UNREACHABLE_ERRORS as err:
            raise _unavailable(f"the Lambda API is unreachable ({type(err).__name__})") from None
        # The broker returns its errors as answers; FunctionError means the function itself failed (a bug, a
        # timeout). Its payload (Lambda's errorMessage) is not repeated here.
        if out.get("FunctionError"):
            raise TokenBrokerError(SERVER_ERROR, 500, f"the token broker failed (Lambda function error: {out['FunctionError']})")
        try:
            return json.loads(body)
        except ValueError:
            raise TokenBrokerError(SERVER_ERROR, 502, "the token broker answered something that is not JSON") from None

    def __repr__(self) -> str:
        return f"invoke_transport({self._function_name!r}, audience={self._audience!r})"


def invoke_transport(
    function_name: str,
    lambda_client: Any = None,
    session: Optional[boto3.session.Session] = None,
    audience: Optional[str] = None,
) -> Transport:
    """Direct Lambda Invoke of the broker's token function (name, ``name:alias`` or ARN).

    ``session``: whose credentials sign the proofs (default: a new boto3 Session: the default credential chain,
    refreshed as it expires). ``lambda_client``: default ``session.client("lambda")`` with one attempt per call and
    timeouts from the time left before ``TokenBrokerClient``'s deadline, so the deadline bounds a call under way. A
    ``lambda_client`` you pass is used as it is: its own timeouts and retries apply (``botocore.config.Config``
    ``connect_timeout``, ``read_timeout``, ``retries``), and can keep a call going past the deadline; give it
    ``retries={"total_max_attempts": 1}`` and timeouts within the deadline. ``audience``: default the function's name
    (the broker's default audience). Proofs go to ``AWS_ENDPOINT_URL_STS`` when set, else to the STS endpoint of the
    Lambda client's region."""
    if not function_name:
        raise ValueError('"function_name" must name the token function')
    session = session or boto3.session.Session()
    if lambda_client is None:
        clients = _ByTimeout(lambda timeout: _default_lambda_client(session, timeout))
    else:
        given = lambda_client
        clients = lambda _timeout_sec: given  # noqa: E731
    return _InvokeTransport(function_name, clients, session, audience or function_name_of(function_name), None)


class _UrlTransport:
    def __init__(self, function_url: str, region: str, audience: str, session: boto3.session.Session):
        self._url = function_url
        self._region = region
        self._audience = audience
        self._session = session
        self._http = _ByTimeout(lambda timeout: URLLib3Session(timeout=(min(CONNECT_TIMEOUT_SEC, timeout), timeout)))

    def __call__(self, request: Mapping[str, Any], timeout_sec: Optional[float] = None) -> Any:
        credentials = _frozen_credentials(self._session)
        proof = sign_identity_proof(credentials, self._region, self._audience)
        body = json.dumps({**request, "identityProof": proof}).encode("utf-8")
        call = AWSRequest(method="POST", url=self._url, data=body, headers={"Content-Type": "application/json"})
        sign(call, credentials, "lambda", self._region)
        try:
            with quiet():
                response = self._http(timeout_sec).send(call.prepare())
        except UNREACHABLE_ERRORS as err:
            raise _unavailable(f"the Function URL is unreachable ({type(err).__name__})") from None
        try:
            answer: Any = json.loads(response.content)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and ("error" in answer or "access_token" in answer):
            return answer
        # AWS itself answered (an unsigned or unpermitted call, throttling) before the broker ran: {"Message": ...}.
        status = response.status_code
        if status in (401, 403):
            raise TokenBrokerError(
                ACCESS_DENIED,
                403,
                f"the Function URL refused the call (HTTP {status}); the caller's role needs lambda:InvokeFunctionUrl and lambda:InvokeFunction via the URL",
            )
        if status == 429 or status >= 500:
            raise _unavailable(f"the Function URL answered HTTP {status}")
        raise TokenBrokerError(SERVER_ERROR, 502, f"the Function URL answered HTTP {status} without a broker answer")

    def __repr__(self) -> str:
        return f"url_transport({self._url!r}, region={self._region!r}, audience={self._audience!r})"


def _is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost (``host`` as ``urlsplit`` gives it: lower case, no brackets)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_function_url(function_url: str) -> None:
    """https, or plain http to a loopback host only (a local broker): elsewhere plain http would carry the identity
    proof and the token in clear."""
    try:
        parts = urlsplit(function_url)
        host = parts.hostname
    except ValueError:  # an invalid port or IPv6 address
        host = None
    if not host:
        raise ValueError('"function_url" must be an absolute URL (the broker\'s Function URL)') from None
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback_host(host)):
        return
    raise ValueError(
        '"function_url" must be https (plain http only to a loopback host: 127.0.0.0/8, ::1, localhost); '
        "elsewhere the identity proof and the token would cross the network in clear"
    )


def url_transport(function_url: str, region: str, audience: str, session: Optional[boto3.session.Session] = None) -> Transport:
    """The broker's Function URL (AuthType AWS_IAM): a SigV4-signed POST with the caller's own credentials.

    ``audience``: the broker's audience (the stage's ``callerProofAudience``, by default its token function's name);
    the URL does not name the function, so it is required. ``session``: whose credentials sign the call and the proof
    (default: a new boto3 Session, the default credential chain). Each call gives up after the time left before
    ``TokenBrokerClient``'s deadline without a connection or an answer. The URL must be https (plain http only to a
    loopback host, for a local broker)."""
    if not function_url:
        raise ValueError('"function_url" must be the broker\'s Function URL')
    _check_function_url(function_url)
    if not region:
        raise ValueError('"region" must be the Function URL\'s region')
    if not audience:
        raise ValueError('"audience" must be the broker\'s audience (the URL does not name the function)')
    return _UrlTransport(function_url, region, audience, session or boto3.session.Session())


