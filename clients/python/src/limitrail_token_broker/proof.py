"""The identity proof the broker asks for with every request: an STS GetCallerIdentity request signed (SigV4, service
``sts``) with the caller's own credentials, which the broker replays to STS to learn who is calling. The signed header
``x-limitrail-broker-audience`` names the broker it is meant for, so a proof made for one broker is useless to
another. A proof is a credential for its 5 minutes: it is never logged, kept or put in an error.

botocore logs what it signs and sends at DEBUG (canonical requests with the session token, signatures, request
bodies). While this package signs a proof or sends a broker request, those lines of the current thread are dropped
(``quiet``), so a service that turns on botocore's debug logging does not log proofs or tokens through us."""

from __future__ import annotations

import logging
import os
import re
import threading
from contextlib import contextmanager
from typing import Dict, Iterator, Mapping, Optional
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import NoCredentialsError

PROOF_AUDIENCE_HEADER = "x-limitrail-broker-audience"
GET_CALLER_IDENTITY = "Action=GetCallerIdentity&Version=2011-06-15"
_REGION = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+-\d+$")

_quiet = threading.local()


class _DropWhileQuiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_quiet, "active", False)


_DROP_WHILE_QUIET = _DropWhileQuiet()
# The loggers of botocore that print signed requests, request bodies and response bodies.
for _name in ("botocore.auth", "botocore.endpoint", "botocore.parsers", "botocore.httpsession"):
    _logger = logging.getLogger(_name)
    if _DROP_WHILE_QUIET not in _logger.filters:
        _logger.addFilter(_DROP_WHILE_QUIET)


@contextmanager
def quiet() -> Iterator[None]:
    """botocore's debug lines of this thread are dropped inside (they would show proofs, tokens, session tokens)."""
    previous = getattr(_quiet, "active", False)
    _quiet.active = True
    try:
        yield
    finally:
        _quiet.active = previous


def sts_url_for(region: str, env: Optional[Mapping[str, str]] = None) -> str:
    """Where proofs are sent, by the broker's own rule: ``AWS_ENDPOINT_URL_STS`` when set (local runs, tests: the
    broker accepts only that origin then), else the region's STS endpoint."""
    override = (os.environ if env is None else env).get("AWS_ENDPOINT_URL_STS")
    if override:
        parts = urlsplit(override)
        return f"{parts.scheme}://{parts.netloc}/"
    if not isinstance(region, str) or not _REGION.match(region):
        raise ValueError('"region" must be an AWS region name such as eu-central-1')
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://sts.{region}.{suffix}/"


def sign(request: AWSRequest, credentials: ReadOnlyCredentials, service: str, region: str) -> None:
    """SigV4-signs ``request`` in place with botocore's own signer, without botocore's debug lines."""
    if credentials is None:
        raise NoCredentialsError()
    with quiet():
        SigV4Auth(credentials, service, region).add_auth(request)


def sign_identity_proof(
    credentials: ReadOnlyCredentials, region: str, audience: str, sts_url: Optional[str] = None
) -> Dict[str, object]:
    """A fresh proof ``{"url", "headers", "body"}``, signed with ``credentials`` (frozen: access key, secret, token)."""
    if not audience:
        raise ValueError('"audience" must name the broker (its token function name by default)')
    url = sts_url or sts_url_for(region)
    request = AWSRequest(
        method="POST",
        url=url,
        data=GET_CALLER_IDENTITY,
        headers={
            "Host": urlsplit(url).netloc,
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            PROOF_AUDIENCE_HEADER: audience,
        },
    )
    sign(request, credentials, "sts", region)
    return {"url": url, "headers": {name.lower(): value for name, value in request.headers.items()}, "body": GET_CALLER_IDENTITY}
