"""limitrail_token_broker: LimitRail tokens from the token broker for Python services.

    from limitrail_token_broker import TokenBrokerClient, TokenBrokerError, invoke_transport

    broker = TokenBrokerClient(invoke_transport("limitrail-token-broker-prod-token"))
    token = broker.token(["limitrail.usage.read"])

See docs/callers.md in the repository.
"""

from .client import TokenBrokerClient
from .errors import (
    ACCESS_DENIED,
    INVALID_REQUEST,
    INVALID_SCOPE,
    SERVER_ERROR,
    TEMPORARILY_UNAVAILABLE,
    TokenBrokerError,
)
from .proof import PROOF_AUDIENCE_HEADER, sign_identity_proof, sts_url_for
from .transports import Transport, invoke_transport, url_transport

__all__ = [
    "ACCESS_DENIED",
    "INVALID_REQUEST",
    "INVALID_SCOPE",
    "PROOF_AUDIENCE_HEADER",
    "SERVER_ERROR",
    "TEMPORARILY_UNAVAILABLE",
    "TokenBrokerClient",
    "TokenBrokerError",
    "Transport",
    "invoke_transport",
    "sign_identity_proof",
    "sts_url_for",
    "url_transport",
]
