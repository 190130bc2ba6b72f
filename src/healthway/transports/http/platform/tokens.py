"""``/platform/v1/tokens``: personal access tokens, and the password login that yields the first one.

``POST /tokens`` takes either ``Authorization: Bearer hwpat_...`` (another token for the same person) or
``Authorization: Basic`` e-mail:password, plus ``Healthway-TOTP`` when the user has TOTP: that is the login
path, throttled per (account, client address). The token is bound to one organization: the ``organization``
named (body or query), else the user's only one. ``PUT /account/password`` changes the caller's own password,
authenticated with the current one (so that a generated, must-change password can be replaced).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from healthway.domain.actors import Actor
from healthway.errors import Unauthenticated
from healthway.runtime import Healthway
from healthway.services import login, personal_tokens, users
from healthway.transports.http.platform.deps import (
    ActorDep,
    Cursor,
    HealthwayDep,
    Limit,
    OrganizationParam,
    current_actor,
    listing,
)

router = APIRouter(tags=["tokens"])
TOTP_HEADER = "healthway-totp"


class TokenCreate(BaseModel):
    name: str = Field(default="api", min_length=1, max_length=200)
    organization: str | None = Field(
        default=None, max_length=64, description="The organization the token acts in; needed only for several"
    )


@router.post("/tokens", status_code=201)
async def create_token(
    request: Request,
    response: Response,
    hw: HealthwayDep,
    body: TokenCreate | None = None,
    organization: OrganizationParam = None,
) -> Any:
    """A new personal access token for the caller, bound to one of their organizations; in this answer only."""
    body = body or TokenCreate()
    requested = body.organization or organization
    actor = await _authenticate(hw, request, requested)
    created = await run_in_threadpool(_issue, hw, actor, body.name, requested)
    response.headers["Cache-Control"] = "no-store"
    return created


def _issue(hw: Healthway, actor: Actor, name: str, requested: str | None) -> dict[str, Any]:
    with hw.db.session() as session:
        return personal_tokens.issue_own(session, actor=actor, name=name, organization_id=requested)


@router.get("/tokens")
def list_tokens(hw: HealthwayDep, actor: ActorDep, limit: Limit = 100, cursor: Cursor = None) -> dict[str, Any]:
    """The caller's own active tokens; never their values."""
    with hw.db.session() as session:
        return listing("tokens", personal_tokens.list_page(session, actor=actor, cursor=cursor, limit=limit))


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: str, hw: HealthwayDep, actor: ActorDep) -> None:
    with hw.db.session() as session:
        row = personal_tokens.find_for(session, actor=actor, token_id=token_id)
        personal_tokens.revoke(session, actor=actor, token=row, now=hw.clock())


async def _authenticate(hw: Healthway, request: Request, organization: str | None) -> Actor:
    """The caller, by HTTP Basic (a password login) or by one of their tokens."""
    scheme = request.headers.get("authorization", "").partition(" ")[0]
    if scheme.lower() == "basic":
        return await basic_login(hw, request, organization=organization)
    if scheme.lower() == "bearer":
        return await run_in_threadpool(current_actor, request)
    raise Unauthenticated("log in with HTTP Basic (e-mail:password) or a personal access token")


async def basic_login(
    hw: Healthway, request: Request, *, organization: str | None = None, allow_must_change: bool = False
) -> Actor:
    """Password login from ``Authorization: Basic`` (+ ``Healthway-TOTP``); throttled, argon2 in a bounded pool."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        raise Unauthenticated("log in with HTTP Basic: your e-mail and current password")
    address = request.client.host if request.client else None
    return await login.sign_in(
        hw.db,
        hw.password_checker,
        _basic_credentials(credentials, request.headers.get(TOTP_HEADER)),
        address=address,
        now=hw.clock(),
        organization_id=organization,
        allow_must_change=allow_must_change,
    )


def _basic_credentials(credentials: str, totp: str | None) -> login.Password:
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("malformed Basic credentials") from None
    email, colon, password = decoded.partition(":")
    if not colon:
        raise Unauthenticated("malformed Basic credentials")
    return login.Password(email, password, totp)


class PasswordChange(BaseModel):
    password: str = Field(min_length=1, max_length=1100, description="The new password (12 characters or more)")


@router.put("/account/password", status_code=204)
async def change_password(request: Request, hw: HealthwayDep, body: PasswordChange) -> None:
    """Change the caller's own password; authenticated with HTTP Basic and the CURRENT password (+ TOTP)."""
    actor = await basic_login(hw, request, allow_must_change=True)
    await run_in_threadpool(_set_password, hw, actor, body.password)


def _set_password(hw: Healthway, actor: Actor, password: str) -> None:
    with hw.db.session() as session:
        users.set_own_password(session, actor=actor, password=password, passwords=hw.passwords)
