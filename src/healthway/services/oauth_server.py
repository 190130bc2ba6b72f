"""The OAuth server side of OAuth API keys: client authentication by assertion, then token, revoke, introspect.

``OAuthServer`` takes the form fields (already parsed by the transport) and answers plain dicts. Reads of the
client go through a short in-process cache (keys never change after creation; deletion is re-checked inside the
write transaction). Writes go to ``submit`` (the group committer in the server); token issuance is further
batched by ``TokenIssuer``, so many concurrent token requests share a few statements and one commit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session

from healthway.domain import assertions, jwk, scopes
from healthway.domain.actors import Actor, ActorType
from healthway.domain.assertions import Verified
from healthway.domain.audit import AuditAction
from healthway.errors import InvalidClient, LegacyKeysDisabled, OAuthInvalidRequest, UnsupportedGrantType
from healthway.services import access_tokens, audit, jti, oauth_keys
from healthway.services.jwks_fetcher import JwksFetcher, JwksUnavailable
from healthway.services.oauth_rejections import RejectionAggregator, RejectionEvent
from healthway.services.token_issuer import IssueRequest, TokenIssuer
from healthway.storage.db import Database
from healthway.storage.models import Environment, OAuthKey

T = TypeVar("T")
Submit = Callable[[Callable[[Session], T]], Awaitable[T]]
TOKEN_TTL = timedelta(seconds=300)
CLIENT_CACHE_SECONDS = 5.0
PURGE_EVERY_SECONDS = 60.0
LAST_USED_EVERY_SECONDS = 60.0  # last_used_at is written at most this often per key and node
log = structlog.get_logger("healthway.oauth")


@dataclass(frozen=True)
class Client:
    key_id: str
    client_id: str
    environment_id: str
    organization_id: str
    alg: str
    jwks: dict[str, Any] | None
    jwks_url: str | None
    scopes: list[str]


@dataclass(frozen=True)
class Chores:
    purge: bool  # delete expired jti rows
    touch_last_used: bool  # update the key's last_used_at


@dataclass(frozen=True)
class Authenticated:
    client: Client
    assertion: Verified


def load_client(session: Session, client_id: str) -> Client | None:
    row = session.execute(
        sa.select(OAuthKey, Environment.organization_id)
        .join(Environment)
        .where(OAuthKey.client_id == client_id, oauth_keys.usable())
    ).first()
    if row is None:
        return None
    key, org_id = row
    return Client(key.id, key.client_id, key.environment_id, org_id, key.alg, key.jwks, key.jwks_url, key.scopes)


def _field(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise OAuthInvalidRequest(f"the {name} parameter is required")
    return value


def _unverified(form: Mapping[str, str]) -> assertions.Unverified:
    """The form's assertion, parsed; its issuer must equal the form's client_id when one is sent."""
    if form.get("client_assertion_type") != assertions.ASSERTION_TYPE:
        _field(form, "client_assertion_type")
        raise InvalidClient(f"client_assertion_type must be {assertions.ASSERTION_TYPE}")
    unverified = assertions.parse(_field(form, "client_assertion"))
    if form.get("client_id", unverified.issuer) != unverified.issuer:
        raise InvalidClient("client_id does not match the assertion's issuer")
    return unverified


def claimed_client(form: Mapping[str, str]) -> str:
    """Who a request claims to be: its client_id, else its assertion's unverified ``iss`` (cut to 64 characters),
    else ``"unknown"``. Never trusted: only a key for counting failed authentications."""
    if client_id := form.get("client_id"):
        return client_id[:64]
    try:
        issuer = assertions.parse(form.get("client_assertion", "")).claims.get("iss")
    except InvalidClient:
        return "unknown"
    return issuer[:64] if isinstance(issuer, str) and issuer else "unknown"


class OAuthServer:
    def __init__(
        self,
        *,
        db: Database,
        submit: Submit[Any],
        fetcher: JwksFetcher,
        audience: str,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db, self._submit, self._fetcher = db, submit, fetcher
        self._audience, self._clock, self._monotonic = audience, clock, monotonic
        self._clients: dict[str, tuple[float, Client]] = {}
        self._reading: dict[str, asyncio.Future[Client | None]] = {}
        self._rejections = RejectionAggregator(monotonic=monotonic)
        self._next_purge = 0.0
        self._last_used_written: dict[str, float] = {}
        self._issuer = TokenIssuer(submit, clock=clock, ttl=TOKEN_TTL)

    # -- client authentication -----------------------------------------------------------------------------
    async def authenticate(self, form: Mapping[str, str], *, address: str | None) -> Authenticated:
        """Checks the assertion in the order of ``domain.assertions``; refusals are audited (aggregated)."""
        try:
            unverified = _unverified(form)
            client = await self._client(unverified.issuer)
            if client is None:
                raise InvalidClient("unknown client")  # noqa: TRY301 (audited below like every refusal)
        except InvalidClient as exc:
            await self._audit_rejection(None, exc.message, address)
            raise
        try:
            return Authenticated(client, await self._verify(unverified, client))
        except InvalidClient as exc:
            await self._audit_rejection(client, exc.message, address)
            raise

    async def _verify(self, unverified: assertions.Unverified, client: Client) -> Verified:
        kid = assertions.check_header(unverified.header, alg=client.alg, jwks_url=client.jwks_url)
        key = jwk.select(await self._jwks(client, kid), kid, client.alg)
        if key is None:
            raise InvalidClient("no registered key of this client has that kid and fits its algorithm")
        assertions.verify_signature(unverified, key, client.alg)
        now = self._clock().timestamp()
        return assertions.check_claims(unverified.claims, client_id=client.client_id, audience=self._audience, now=now)

    async def _jwks(self, client: Client, kid: str) -> dict[str, Any]:
        if client.jwks is not None:
            return client.jwks
        assert client.jwks_url is not None
        try:
            return await self._fetcher.fetch(client.jwks_url, kid=kid)
        except JwksUnavailable as exc:
            raise InvalidClient(f"the client's JWK Set is unavailable: {exc}") from None

    async def _client(self, client_id: str) -> Client | None:
        cached = self._clients.get(client_id)
        if cached is not None and self._monotonic() - cached[0] < CLIENT_CACHE_SECONDS:
            return cached[1]
        reading = self._reading.get(client_id)
        if reading is None:  # concurrent misses of one client share one read (the cache expires under load)
            reading = self._reading[client_id] = asyncio.ensure_future(
                anyio.to_thread.run_sync(self._read_client, client_id)
            )
            reading.add_done_callback(lambda _: self._reading.pop(client_id, None))
        client = await asyncio.shield(reading)
        if client is not None:
            if len(self._clients) > 10_000:
                self._clients.clear()
            self._clients[client_id] = (self._monotonic(), client)
        return client

    def _read_client(self, client_id: str) -> Client | None:
        with self._db.read_session() as session:
            return load_client(session, client_id)

    async def _audit_rejection(self, client: Client | None, reason: str, address: str | None) -> None:
        event = self._rejections.note(
            client_id=client.client_id if client else None,
            organization_id=client.organization_id if client else None,
            reason=reason,
        )
        if event is None:
            return
        try:
            await self._submit(lambda session: _record_rejection(session, event, address))
        except Exception as exc:  # auditing must not turn a refusal into a 500
            log.warning("could not audit a refused assertion", error=type(exc).__name__)

    # -- endpoints ----------------------------------------------------------------------------------------
    async def token(self, form: Mapping[str, str], *, address: str | None) -> dict[str, Any]:
        """RFC 6749 §4.4 client_credentials with private_key_jwt → the token response body."""
        grant_type = _field(form, "grant_type")
        if grant_type != "client_credentials":
            raise UnsupportedGrantType("only grant_type=client_credentials is supported")
        auth = await self.authenticate(form, address=address)
        scope = scopes.grant(form.get("scope"), auth.client.scopes)
        chores, client = self._chores(auth.client), auth.client
        if chores.purge:
            self._issuer.purge_with_next_batch()
        request = IssueRequest(
            client.key_id,
            client.client_id,
            client.environment_id,
            auth.assertion.jti,
            auth.assertion.expires_at,
            scope,
            touch_last_used=chores.touch_last_used,
            verified_at=auth.assertion.verified_at,
        )
        try:
            token = await self._issuer.issue(request)
        except InvalidClient as exc:
            await self._audit_rejection(client, exc.message, address)
            raise
        expires_in = int(TOKEN_TTL.total_seconds())
        return {"access_token": token, "token_type": "Bearer", "expires_in": expires_in, "scope": scope}

    def _chores(self, client: Client) -> Chores:
        """Which occasional writes to add to this unit of work (kept off the hot path the rest of the time)."""
        now = self._monotonic()
        purge = now >= self._next_purge
        if purge:
            self._next_purge = now + PURGE_EVERY_SECONDS
        touch = now - self._last_used_written.get(client.key_id, -LAST_USED_EVERY_SECONDS) >= LAST_USED_EVERY_SECONDS
        if touch:
            if len(self._last_used_written) > 10_000:
                self._last_used_written.clear()
            self._last_used_written[client.key_id] = now
        return Chores(purge=purge, touch_last_used=touch)

    async def revoke(self, form: Mapping[str, str], *, address: str | None) -> None:
        """RFC 7009: revokes the token when this client owns it; the answer is the same either way."""
        token = _field(form, "token")
        auth = await self.authenticate(form, address=address)
        now, chores = self._clock(), self._chores(auth.client)

        def work(session: Session) -> None:
            _require_key(session, auth.client)
            _record_use(session, auth, now, chores)
            row = access_tokens.find(session, token)
            if row is not None and row.oauth_key_id == auth.client.key_id:
                access_tokens.revoke(session, token, now=now)

        await self._write(auth, work, address)

    async def introspect(self, form: Mapping[str, str], *, address: str | None) -> dict[str, Any]:
        """RFC 7662: ``{"active": false}`` for anything not valid or not of the caller's environment."""
        token = _field(form, "token")
        auth = await self.authenticate(form, address=address)
        now, chores = self._clock(), self._chores(auth.client)

        def work(session: Session) -> dict[str, Any]:
            _require_key(session, auth.client)
            _record_use(session, auth, now, chores)
            try:
                grant = access_tokens.authenticate(session, token, now=now)
            except LegacyKeysDisabled:  # a legacy token of an organization that turned them off: not active
                grant = None
            if grant is None or grant.environment.id != auth.client.environment_id:
                return {"active": False}
            client_id = session.scalar(sa.select(OAuthKey.client_id).where(OAuthKey.id == grant.oauth_key_id))
            return {
                "active": True,
                "scope": grant.scope,
                "client_id": client_id,
                "token_type": "Bearer",
                "exp": int(grant.expires_at.timestamp()),
                "environment": grant.environment.name,
                "sources": sorted(grant.source_ids) if grant.source_ids is not None else None,
            }

        result: dict[str, Any] = await self._write(auth, work, address)
        return result

    async def _write(self, auth: Authenticated, work: Callable[[Session], T], address: str | None) -> T:
        """Run the unit of work; a refusal found there (jti replay, key deleted meanwhile) is audited too."""
        try:
            result: T = await self._submit(work)
        except InvalidClient as exc:
            await self._audit_rejection(auth.client, exc.message, address)
            raise
        return result


def _require_key(session: Session, client: Client) -> None:
    """The key still exists (it may have been deleted while its client was cached here)."""
    alive = session.scalar(sa.select(OAuthKey.id).where(OAuthKey.id == client.key_id, oauth_keys.usable()))
    if alive is None:
        raise InvalidClient("unknown client")


def _record_use(session: Session, auth: Authenticated, now: datetime, chores: Chores) -> None:
    """In the write transaction: the jti is new (recorded now); now and then, purge and last-used."""
    client = auth.client
    if chores.purge:
        jti.purge(session, now=now)
    assertion = auth.assertion
    expires_at = datetime.fromtimestamp(assertion.expires_at, UTC)
    verified_at = datetime.fromtimestamp(assertion.verified_at, UTC)
    if not jti.remember(
        session, client_id=client.client_id, jti=assertion.jti, expires_at=expires_at, verified_at=verified_at
    ):
        raise InvalidClient("this client assertion was already used (jti replay)")
    if chores.touch_last_used:
        session.execute(sa.update(OAuthKey).where(OAuthKey.id == client.key_id).values(last_used_at=now))


def _record_rejection(session: Session, event: RejectionEvent, address: str | None) -> None:
    actor_type = ActorType.OAUTH_KEY if event.client_id else ActorType.ANONYMOUS
    audit.record(
        session,
        actor=Actor(actor_type, id=event.client_id, address=address),
        action=AuditAction.ASSERTION_REJECT,
        organization_id=event.organization_id,
        subject_type="oauth_key" if event.client_id else None,
        subject_id=event.client_id,
        summary=event.summary,
    )
