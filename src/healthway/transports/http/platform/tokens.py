"""``/platform/v1/tokens``: personal access tokens, and the password login that yields the first one.

``POST /tokens`` takes either ``Authorization: Bearer hwpat_...`` (another token for the same person) or
``Authorization: Basic`` e-mail:password, plus ``Healthway-TOTP`` when the user has TOTP: that is the login
path, throttled per account and per client address.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from healthway.app import Healthway
from healthway.domain.actors import Actor, ActorType
from healthway.errors import Unauthenticated
from healthway.services import login, tokens
from healthway.storage.models import PersonalAccessToken, User
from healthway.storage.pagination import page
from healthway.transports.account_views import token_view
from healthway.transports.http.platform.deps import ActorDep, Cursor, HealthwayDep, Limit

router = APIRouter(tags=["tokens"])
TOTP_HEADER = "healthway-totp"


class TokenCreate(BaseModel):
    name: str = Field(default="api", min_length=1, max_length=200)


@router.post("/tokens", status_code=201)
def create_token(request: Request, response: Response, hw: HealthwayDep, body: TokenCreate | None = None) -> Any:
    """A new personal access token for the caller; the token is in this answer only."""
    with hw.db.session() as session:
        user, actor = _authenticate(hw, session, request)
        row, token = tokens.issue(session, actor=actor, user=user, name=body.name if body else "api")
    response.headers["Cache-Control"] = "no-store"
    return {"token": token, "name": row.name, "id": row.id}


@router.get("/tokens")
def list_tokens(hw: HealthwayDep, actor: ActorDep, limit: Limit = 100, cursor: Cursor = None) -> dict[str, Any]:
    """The caller's own active tokens; never their values."""
    with hw.db.session() as session:
        user = session.get(User, actor.id)
        assert user is not None
        rows, next_cursor = page(
            session,
            tokens.active_of(user),
            created_at=PersonalAccessToken.created_at,
            row_id=PersonalAccessToken.id,
            cursor=cursor,
            limit=limit,
        )
        return {"tokens": [token_view(t) for t in rows], "next_cursor": next_cursor}


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: str, hw: HealthwayDep, actor: ActorDep) -> None:
    with hw.db.session() as session:
        row = tokens.find_for(session, actor=actor, token_id=token_id)
        tokens.revoke(session, actor=actor, token=row, now=hw.clock())


def _authenticate(hw: Healthway, session: Session, request: Request) -> tuple[User, Actor]:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    address = request.client.host if request.client else None
    if scheme.lower() == "basic":
        email, password = _basic_credentials(credentials)
        totp = request.headers.get(TOTP_HEADER)
        user = login.login(session, email=email, password=password, totp=totp, address=address, now=hw.clock())
    elif scheme.lower() == "bearer":
        found = tokens.authenticate(session, credentials.strip(), now=hw.clock())
        if found is None:
            raise Unauthenticated("invalid, expired or revoked personal access token")
        user = found
    else:
        raise Unauthenticated("log in with HTTP Basic (e-mail:password) or a personal access token")
    return user, Actor(ActorType.USER, id=user.id, label=user.email, address=address)


def _basic_credentials(credentials: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("malformed Basic credentials") from None
    email, colon, password = decoded.partition(":")
    if not colon:
        raise Unauthenticated("malformed Basic credentials")
    return email, password
