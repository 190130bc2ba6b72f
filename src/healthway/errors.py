"""Healthway's one exception tree. Each class knows its wire code and HTTP status.

    HealthwayError                      500 internal_error
     ├── ConfigurationError             startup/CLI problems: bad settings, unreachable database, busy port
     ├── StorageUnavailable             503 storage_unavailable
     ├── ServerBusy                     503 server_busy (+ Retry-After: too many large uploads at once)
     ├── InvalidRequest                 400 invalid_request
     │    ├── UnknownEnvironment        400 unknown_environment
     │    └── MalformedHl7              400 invalid_request (not HL7v2, or its MSH header or batch is broken)
     ├── Unauthenticated                401 unauthenticated
     │    └── InvalidToken              401 invalid_token (+ WWW-Authenticate: Bearer)
     │         └── LegacyKeysDisabled   401 legacy_keys_disabled (+ Deprecation: true)
     ├── PermissionDenied               403 forbidden
     │    ├── PasswordChangeRequired    403 password_change_required (a generated password, not yet changed)
     │    └── InsufficientScope         403 insufficient_scope (+ WWW-Authenticate: Bearer, RFC 6750 §3.1)
     ├── NotFound                       404 not_found
     ├── Conflict                       409 conflict
     │    └── AlreadyInitialized        409 already_initialized
     ├── PayloadTooLarge                413 payload_too_large
     │    └── FrameTooLarge             413 payload_too_large (an MLLP frame over the size limit)
     ├── UnprocessableEntity            422 unprocessable_entity
     ├── RateLimited                    429 rate_limited
     ├── BadGateway                     502 bad_gateway (a synchronous request's destination failed)
     ├── GatewayTimeout                 504 gateway_timeout (... or did not answer in time)
     └── OAuthError                     RFC 6749 errors, rendered as {"error", "error_description"}
          ├── InvalidClient             401 invalid_client
          ├── OAuthInvalidRequest       400 invalid_request
          ├── UnsupportedGrantType      400 unsupported_grant_type
          └── InvalidScope              400 invalid_scope

Messages are shown to callers: they never contain secrets, and never echo what was sent.
"""

from __future__ import annotations


class HealthwayError(Exception):
    code = "internal_error"
    status_code = 500

    def __init__(self, message: str = "internal server error") -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(HealthwayError):
    code = "configuration_error"


class StorageUnavailable(HealthwayError):
    code = "storage_unavailable"
    status_code = 503


class ServerBusy(HealthwayError):
    code = "server_busy"
    status_code = 503
    retry_after = 1


class InvalidRequest(HealthwayError):
    code = "invalid_request"
    status_code = 400


class UnknownEnvironment(InvalidRequest):
    code = "unknown_environment"


class MalformedHl7(InvalidRequest):
    """Not an HL7v2 message, or one whose MSH header (or batch file) cannot be read. The message is fixed text."""


class Unauthenticated(HealthwayError):
    code = "unauthenticated"
    status_code = 401


class InvalidToken(Unauthenticated):
    """A data endpoint's bearer token is missing, unknown, expired or revoked (RFC 6750 §3.1)."""

    code = "invalid_token"


class LegacyKeysDisabled(InvalidToken):
    """A legacy key, or a token it issued, while its organization has turned legacy keys off."""

    code = "legacy_keys_disabled"
    headers = {"Deprecation": "true"}

    def __init__(
        self,
        message: str = "legacy API keys are turned off for this organization (allow_legacy_keys is off): "
        "authenticate with an OAuth key at /v2/auth/token instead",
    ) -> None:
        super().__init__(message)


class PermissionDenied(HealthwayError):
    code = "forbidden"
    status_code = 403


class PasswordChangeRequired(PermissionDenied):
    code = "password_change_required"


class InsufficientScope(PermissionDenied):
    """The bearer token's SMART scopes do not allow the request; ``scope`` names one that would."""

    code = "insufficient_scope"

    def __init__(self, message: str, *, scope: str) -> None:
        super().__init__(message)
        self.scope = scope


class NotFound(HealthwayError):
    code = "not_found"
    status_code = 404


class Conflict(HealthwayError):
    code = "conflict"
    status_code = 409


class AlreadyInitialized(Conflict):
    code = "already_initialized"


class PayloadTooLarge(HealthwayError):
    code = "payload_too_large"
    status_code = 413


class FrameTooLarge(PayloadTooLarge):
    """An MLLP frame grew past the size limit. ``head`` holds its first bytes (enough for the MSH segment, so that
    the refusal can name the message's control ID); the message itself echoes nothing of the frame."""

    def __init__(self, limit: int, head: bytes = b"") -> None:
        super().__init__(f"the MLLP frame is larger than {limit} bytes")
        self.limit = limit
        self.head = head


class UnprocessableEntity(HealthwayError):
    code = "unprocessable_entity"
    status_code = 422


class RateLimited(HealthwayError):
    code = "rate_limited"
    status_code = 429

    def __init__(self, message: str, *, limit: int, remaining: int, reset_at: int, retry_after: int) -> None:
        super().__init__(message)
        self.limit, self.remaining, self.reset_at, self.retry_after = limit, remaining, reset_at, retry_after


class BadGateway(HealthwayError):
    code = "bad_gateway"
    status_code = 502


class GatewayTimeout(HealthwayError):
    code = "gateway_timeout"
    status_code = 504


class OAuthError(HealthwayError):
    """An RFC 6749 §5.2 error; ``code`` is the ``error`` member of the body."""

    code = "invalid_request"
    status_code = 400

    def __init__(self, message: str) -> None:
        # The description goes into a JSON body and sometimes a header: no control characters.
        super().__init__(" ".join(message.split()))


class InvalidClient(OAuthError):
    code = "invalid_client"
    status_code = 401


class OAuthInvalidRequest(OAuthError):
    code = "invalid_request"


class UnsupportedGrantType(OAuthError):
    code = "unsupported_grant_type"


class InvalidScope(OAuthError):
    code = "invalid_scope"
