"""The one error this package raises for the broker's answers and for failures to reach it: ``TokenBrokerError``,
with the broker's OAuth error code (``error``), its HTTP-style ``status`` and its description. Descriptions come from
the broker (which never puts a token or a secret in them) or from this package (which never puts a token, a proof or
credentials in them)."""

from __future__ import annotations

from typing import Any, Mapping, Optional

INVALID_REQUEST = "invalid_request"
INVALID_SCOPE = "invalid_scope"
ACCESS_DENIED = "access_denied"
SERVER_ERROR = "server_error"
TEMPORARILY_UNAVAILABLE = "temporarily_unavailable"


class TokenBrokerError(Exception):
    """``error``: ``invalid_request``, ``invalid_scope``, ``access_denied``, ``server_error`` or
    ``temporarily_unavailable`` (retried by the client within its deadline, raised once no retry fits)."""

    def __init__(self, error: str, status: int, description: str, retry_after_seconds: Optional[float] = None):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.status = status
        self.description = description
        #: With ``temporarily_unavailable``: the broker asked for at least this long before the next try.
        self.retry_after_seconds = retry_after_seconds

    @property
    def retryable(self) -> bool:
        return self.error == TEMPORARILY_UNAVAILABLE

    def copy(self) -> "TokenBrokerError":
        """The same error as a new object (each thread that shares a failed broker call raises its own)."""
        return TokenBrokerError(self.error, self.status, self.description, self.retry_after_seconds)

    def __reduce__(self):
        return (TokenBrokerError, (self.error, self.status, self.description, self.retry_after_seconds))

    def __repr__(self) -> str:
        return f"TokenBrokerError(error={self.error!r}, status={self.status!r}, description={self.description!r})"


def _invalid(what: str) -> TokenBrokerError:
    return TokenBrokerError(SERVER_ERROR, 502, f"the token broker answered something unusable: {what}")


def error_of(answer: Mapping[str, Any]) -> TokenBrokerError:
    """The broker's error answer as a ``TokenBrokerError``; a malformed one is still an error, never a token."""
    error = answer.get("error")
    status = answer.get("status")
    description = answer.get("error_description")
    retry_after = answer.get("retryAfterSeconds")
    return TokenBrokerError(
        error if isinstance(error, str) and error else SERVER_ERROR,
        status if isinstance(status, int) and not isinstance(status, bool) else 500,
        description if isinstance(description, str) else "(no description)",
        retry_after if isinstance(retry_after, (int, float)) and not isinstance(retry_after, bool) and retry_after > 0 else None,
    )


def token_answer_of(answer: Any) -> Mapping[str, Any]:
    """A token answer, or raises the broker's error (or ``server_error`` 502 naming what is wrong with the answer,
    never echoing it: it could hold a token)."""
    if not isinstance(answer, Mapping):
        raise _invalid('"answer" must be a JSON object')
    if "error" in answer:
        raise error_of(answer)
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise _invalid('"answer" "access_token" must be a non-empty string')
    token_type = answer.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise _invalid('"answer" "token_type" must be "Bearer"')
    expires_in = answer.get("expires_in")
    if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool) or not expires_in >= 0:
        raise _invalid('"answer" "expires_in" must be a number of seconds, at least 0')
    return answer
