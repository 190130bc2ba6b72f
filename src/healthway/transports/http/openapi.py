"""The OpenAPI document: FastAPI's own (the Platform API) plus the lean Starlette routes, from a declarative table.

The data and OAuth routes are plain Starlette ``Route``s (the hot path: no dependency resolution, no validation
models). Their request and answer shapes are described here by pydantic models used only for this document, never
for parsing, and merged into the document FastAPI builds from its own routes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from healthway.domain.messages import ContentType
from healthway.transports.http.data_endpoints import FHIR_ISSUE_CODES

REF = "#/components/schemas/{model}"
DATA_TOKEN = "accessToken"  # noqa: S105 (a scheme name) — bearer access token from /v2/auth/token or /auth/authenticate
PERSONAL_TOKEN = "personalAccessToken"  # noqa: S105 — hwpat_... for the Platform API
BASIC_LOGIN = "basicLogin"


# --- shapes (documentation only) -------------------------------------------------------------------------------


class TokenRequest(BaseModel):
    """SMART Backend Services client credentials with a ``private_key_jwt`` client assertion."""

    grant_type: Literal["client_credentials"]
    client_assertion_type: Literal["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]
    client_assertion: str = Field(description="A JWT signed with the key's pinned alg; iss = sub = client_id")
    scope: str | None = Field(None, description="Space-separated SMART system scopes, e.g. system/*.read")


class ClientAuthenticated(BaseModel):
    """RFC 7009 / RFC 7662 requests: the client authenticates as for the token endpoint."""

    token: str
    token_type_hint: str | None = None
    client_assertion_type: Literal["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]
    client_assertion: str


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int = Field(examples=[300])
    scope: str


class Introspection(BaseModel):
    model_config = ConfigDict(extra="allow")
    active: bool


class OAuthErrorBody(BaseModel):
    """RFC 6749 §5.2."""

    error: str = Field(examples=["invalid_client"])
    error_description: str


class Discovery(BaseModel):
    model_config = ConfigDict(extra="allow")
    issuer: str
    token_endpoint: str
    token_endpoint_auth_methods_supported: list[str]
    token_endpoint_auth_signing_alg_values_supported: list[str]
    grant_types_supported: list[str]
    scopes_supported: list[str]


class LegacyAuthenticate(BaseModel):
    apiKey: str  # noqa: N815 (Redox's wire names)
    secret: str


class LegacyRefresh(BaseModel):
    apiKey: str  # noqa: N815
    refreshToken: str  # noqa: N815


class LegacyTokens(BaseModel):
    accessToken: str  # noqa: N815
    expires: str = Field(description="ISO 8601, now + 24 h", examples=["2026-01-02T03:04:05.678Z"])
    refreshToken: str  # noqa: N815


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_request"])
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class DestinationRef(BaseModel):
    ID: str


class LogRef(BaseModel):
    ID: str
    AttemptID: str


class Meta(BaseModel):
    model_config = ConfigDict(extra="allow")
    DataModel: str = Field(examples=["PatientAdmin"])
    EventType: str = Field(description="Ends in Query for a synchronous REQUEST", examples=["NewPatient"])
    Destinations: list[DestinationRef] | None = None
    Test: bool | None = None


class DataModelMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    Meta: Meta


class AcceptedMeta(Meta):
    Logs: list[LogRef]


class DataModelAccepted(BaseModel):
    Meta: AcceptedMeta
    Errors: list[Any]


class Coding(BaseModel):
    model_config = ConfigDict(extra="allow")
    system: str | None = None
    code: str


class MessageHeader(BaseModel):
    model_config = ConfigDict(extra="allow")
    resourceType: Literal["MessageHeader"]  # noqa: N815
    eventCoding: Coding  # noqa: N815


class BundleEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    resource: dict[str, Any]


class MessageBundle(BaseModel):
    """A FHIR R4 message Bundle: the first entry is the MessageHeader, its eventCoding.code the event type."""

    model_config = ConfigDict(extra="allow")
    resourceType: Literal["Bundle"]  # noqa: N815
    type: Literal["message"]
    entry: list[BundleEntry] = Field(min_length=1)


class Issue(BaseModel):
    severity: str
    code: str
    diagnostics: str


class OperationOutcome(BaseModel):
    model_config = ConfigDict(extra="allow")
    resourceType: Literal["OperationOutcome"]  # noqa: N815
    id: str | None = None
    issue: list[Issue]


SHAPES: list[type[BaseModel]] = [
    TokenRequest,
    ClientAuthenticated,
    TokenResponse,
    Introspection,
    OAuthErrorBody,
    Discovery,
    LegacyAuthenticate,
    LegacyRefresh,
    LegacyTokens,
    ErrorBody,
    DataModelMessage,
    DataModelAccepted,
    MessageBundle,
    OperationOutcome,
]


# --- the table of lean operations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    description: str
    shape: type[BaseModel] | None = None
    media_type: str = ContentType.JSON
    example: dict[str, Any] | None = None
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    summary: str
    tag: str
    answers: tuple[Answer, ...]
    body: type[BaseModel] | None = None
    body_type: str = ContentType.JSON
    security: tuple[str, ...] = ()
    parameters: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def _oauth_error(status: int, error: str, description: str) -> Answer:
    example = {"error": error, "error_description": description}
    return Answer(status, description, OAuthErrorBody, example=example)


def _error(status: int, code: str, description: str, *, headers: tuple[str, ...] = ()) -> Answer:
    example = {"error": {"code": code, "message": description}}
    return Answer(status, description, ErrorBody, example=example, headers=headers)


def _outcome(status: int, _code: str, description: str, *, headers: tuple[str, ...] = ()) -> Answer:
    issue = {"severity": "error", "code": FHIR_ISSUE_CODES.get(status, "exception"), "diagnostics": description}
    example = {"resourceType": "OperationOutcome", "issue": [issue]}
    return Answer(status, description, OperationOutcome, ContentType.FHIR_JSON, example, headers)


RATE_LIMIT_HEADERS = ("Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
SOURCE_HEADER = {
    "name": "Healthway-Source-Id",
    "in": "header",
    "required": False,
    "description": "The sending source (Redox-Source-Id is an alias); needed when the key covers several sources",
    "schema": {"type": "string"},
}
IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A repeat within 24 h is acknowledged again and not routed twice",
    "schema": {"type": "string", "maxLength": 255},
}


def _oauth_client_errors() -> tuple[Answer, ...]:
    return (
        _oauth_error(
            400,
            "invalid_client",
            "the client assertion failed; or invalid_request (not a form, over 64 KiB, "
            "a repeated parameter), unsupported_grant_type, invalid_scope",
        ),
        _oauth_error(401, "invalid_client", "the client could not be authenticated"),
        _oauth_error(429, "rate_limited", "too many failed client authentications"),
    )


def _data_errors(error: Callable[..., Answer]) -> tuple[Answer, ...]:
    return (
        error(400, "invalid_request", "malformed body, missing Healthway-Source-Id where needed"),
        error(401, "invalid_token", "no, an expired or a revoked bearer access token"),
        error(403, "insufficient_scope", "a scope or source the token does not grant"),
        error(413, "payload_too_large", "the body exceeds the message size limit"),
        error(429, "rate_limited", "too many requests", headers=RATE_LIMIT_HEADERS),
    )


def _legacy(path: str, summary: str, body: type[BaseModel]) -> Operation:
    return Operation(
        path,
        "post",
        summary,
        "legacy auth",
        (
            Answer(200, "A token pair", LegacyTokens, headers=("Deprecation",)),
            _error(400, "invalid_request", "not a JSON object with the required strings"),
            _error(401, "unauthenticated", "wrong credentials, a spent refresh token, or legacy keys turned off"),
            _error(413, "payload_too_large", "the body exceeds 64 KiB"),
            _error(429, "rate_limited", "too many failed attempts", headers=RATE_LIMIT_HEADERS),
        ),
        body,
    )


def _fhir_read(path: str, summary: str, parameters: tuple[dict[str, Any], ...]) -> Operation:
    return Operation(
        path,
        "get",
        summary,
        "fhir",
        (
            Answer(200, "The FHIR server's answer", media_type=ContentType.FHIR_JSON),
            *_data_errors(_outcome),
            _outcome(404, "not-found", "no FHIR destination for this source"),
            _outcome(502, "exception", "the FHIR server failed"),
            _outcome(504, "timeout", "the FHIR server did not answer within HEALTHWAY_REQUEST_TIMEOUT"),
        ),
        security=(DATA_TOKEN,),
        parameters=(SOURCE_HEADER, *parameters),
    )


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "/v2/auth/token",
        "post",
        "Access token (client_credentials, private_key_jwt)",
        "oauth",
        (Answer(200, "An access token", TokenResponse), *_oauth_client_errors()),
        TokenRequest,
        ContentType.FORM,
    ),
    Operation(
        "/v2/auth/revoke",
        "post",
        "Revoke a token (RFC 7009)",
        "oauth",
        (Answer(200, "Revoked (or unknown)"), *_oauth_client_errors()),
        ClientAuthenticated,
        ContentType.FORM,
    ),
    Operation(
        "/v2/auth/introspect",
        "post",
        "Introspect a token (RFC 7662)",
        "oauth",
        (Answer(200, "The token's state", Introspection), *_oauth_client_errors()),
        ClientAuthenticated,
        ContentType.FORM,
    ),
    Operation(
        "/.well-known/smart-configuration",
        "get",
        "SMART discovery",
        "oauth",
        (Answer(200, "Discovery", Discovery),),
    ),
    Operation(
        "/.well-known/oauth-authorization-server",
        "get",
        "OAuth 2.0 authorization server metadata (RFC 8414)",
        "oauth",
        (Answer(200, "Discovery", Discovery),),
    ),
    _legacy("/auth/authenticate", "Legacy: API key and secret → tokens (deprecated)", LegacyAuthenticate),
    _legacy("/auth/refreshToken", "Legacy: rotate a refresh token (deprecated)", LegacyRefresh),
    Operation(
        "/endpoint",
        "post",
        "Data Model API: SEND (202) or a synchronous ...Query REQUEST (200)",
        "data",
        (
            Answer(200, "A ...Query: the destination's answer"),
            Answer(202, "Stored durably; the request's Meta plus Meta.Logs", DataModelAccepted),
            *_data_errors(_error),
            _error(502, "bad_gateway", "a ...Query whose destination failed"),
            _error(504, "gateway_timeout", "a ...Query whose destination did not answer in time"),
        ),
        DataModelMessage,
        security=(DATA_TOKEN,),
        parameters=(SOURCE_HEADER, IDEMPOTENCY_HEADER),
    ),
    Operation(
        "/fhir/R4/$process-message",
        "post",
        "FHIR message Bundle (asynchronous, like SEND)",
        "fhir",
        (
            Answer(
                202, "Stored durably; the OperationOutcome's id is the log ID", OperationOutcome, ContentType.FHIR_JSON
            ),
            *_data_errors(_outcome),
        ),
        MessageBundle,
        ContentType.FHIR_JSON,
        security=(DATA_TOKEN,),
        parameters=(SOURCE_HEADER, IDEMPOTENCY_HEADER),
    ),
    _fhir_read(
        "/fhir/R4/{type}",
        "FHIR search, proxied to the source's FHIR destination",
        (_path_param("type", "A FHIR resource type, e.g. Patient"),),
    ),
    _fhir_read(
        "/fhir/R4/{type}/{id}",
        "FHIR read, proxied to the source's FHIR destination",
        (_path_param("type", "A FHIR resource type, e.g. Patient"), _path_param("id", "The resource id")),
    ),
)

SECURITY_SCHEMES = {
    DATA_TOKEN: {
        "type": "http",
        "scheme": "bearer",
        "description": "An access token from POST /v2/auth/token (or the legacy POST /auth/authenticate)",
    },
    PERSONAL_TOKEN: {"type": "http", "scheme": "bearer", "bearerFormat": "hwpat_...", "description": "A user's token"},
    BASIC_LOGIN: {"type": "http", "scheme": "basic", "description": "e-mail:password, plus Healthway-TOTP if set"},
}


# --- assembly ---------------------------------------------------------------------------------------------------


def _content(media_type: str, shape: type[BaseModel] | None, example: dict[str, Any] | None) -> dict[str, Any]:
    schema = {"$ref": REF.format(model=shape.__name__)} if shape else {}
    return {media_type: {"schema": schema} | ({"example": example} if example else {})}


def _answer(answer: Answer) -> dict[str, Any]:
    doc: dict[str, Any] = {"description": answer.description}
    if answer.shape or answer.status == 200:
        doc["content"] = _content(answer.media_type, answer.shape, answer.example)
    if answer.headers:
        doc["headers"] = {name: {"schema": {"type": "string"}} for name in answer.headers}
    return doc


def _operation(op: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "tags": [op.tag],
        "summary": op.summary,
        "operationId": f"{op.method}_{op.path}",
        "responses": {str(a.status): _answer(a) for a in op.answers},
    }
    if op.body:
        doc["requestBody"] = {"required": True, "content": _content(op.body_type, op.body, None)}
    if op.security:
        doc["security"] = [{name: []} for name in op.security]
    if op.parameters:
        doc["parameters"] = list(op.parameters)
    return doc


def _shape_schemas() -> dict[str, Any]:
    _, top = models_json_schema([(shape, "validation") for shape in SHAPES], ref_template=REF)
    defs: dict[str, Any] = top.get("$defs", {})
    return defs


def _secure_platform(paths: dict[str, Any]) -> None:
    """Platform API operations take a personal access token (``POST /platform/v1/tokens`` also a Basic login)."""
    for path, operations in paths.items():
        if path.startswith("/platform/"):
            for operation in operations.values():
                operation.setdefault("security", [{PERSONAL_TOKEN: []}])
    if tokens := paths.get("/platform/v1/tokens", {}).get("post"):
        tokens["security"] = [{PERSONAL_TOKEN: []}, {BASIC_LOGIN: []}]


def document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document of its own routes, plus the lean routes and the shapes and schemes they use."""
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    paths: dict[str, Any] = doc.setdefault("paths", {})
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    _secure_platform(paths)
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {}).update(_shape_schemas())
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    return doc


def install(app: FastAPI) -> None:
    """Serve :func:`document` at ``/openapi.json`` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
