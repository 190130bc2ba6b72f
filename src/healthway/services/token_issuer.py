"""Issuing access tokens in batches: the token endpoint's writes, a handful of statements per batch.

Each verified token request needs its ``jti`` recorded and its token stored. ``TokenIssuer`` collects the
requests that arrive while the previous batch is being written and hands them to the unit-of-work runner as
one unit, where ``issue_many`` does the whole batch in set-wise statements: one SELECT for the keys still
alive, one multi-row jti upsert (RETURNING the rows it recorded: a missing row is a replay), one multi-row
token INSERT. Nobody waits on a timer: under load batches grow by themselves, idle a batch is one request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from healthway.domain.secrets import SecretKind, digest, new_secret
from healthway.errors import InvalidClient
from healthway.services import jti, oauth_keys
from healthway.storage.models import AccessToken, OAuthKey, UsedAssertion

Submit = Callable[[Callable[[Session], Any]], Awaitable[Any]]
REPLAY = "this client assertion was already used (jti replay)"


@dataclass(frozen=True)
class IssueRequest:
    key_id: str
    client_id: str
    environment_id: str
    jti: str
    assertion_expires_at: float
    scope: str
    touch_last_used: bool = False  # also write the key's last_used_at
    verified_at: float | None = None  # when the assertion was checked (default: the batch's write time)


Outcome = str | InvalidClient  # the token in clear, or why it was refused


@cache
def _jti_upsert(dialect: str) -> Any:
    """Prebuilt (so compiled once): record a jti, or take over a row that had expired when the assertions were
    verified (``verified_at``, see ``services.jti``); RETURNING what was recorded."""
    table = cast(sa.Table, UsedAssertion.__table__)
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return insert.on_conflict_do_update(
        index_elements=[table.c.client_id, table.c.jti],
        set_={"expires_at": insert.excluded.expires_at},
        where=table.c.expires_at <= sa.bindparam("verified_at", type_=table.c.expires_at.type),
    ).returning(table.c.client_id, table.c.jti)


_TOKEN_INSERT = sa.insert(cast(sa.Table, AccessToken.__table__))


def _alive_keys(session: Session, key_ids: set[str]) -> set[str]:
    query = sa.select(OAuthKey.id).where(OAuthKey.id.in_(key_ids), oauth_keys.usable())
    return set(session.scalars(query))


def _record_jtis(session: Session, requests: Sequence[IssueRequest], now: datetime) -> set[tuple[str, str]]:
    """The (client_id, jti) pairs newly recorded, in one multi-row statement. Pairs are distinct in it (one
    statement may not touch a row twice); a second request for a pair in the same batch is a replay.

    A row is taken over only if it had expired at the earliest verification time of the batch: one value for
    the whole statement (its WHERE is shared by every row), and the earliest is the strictest."""
    verified_at = min((_verified_at(r, now) for r in requests), default=now)
    rows = {
        (r.client_id, r.jti): {
            "client_id": r.client_id,
            "jti": r.jti,
            "expires_at": datetime.fromtimestamp(r.assertion_expires_at, UTC),
            "verified_at": verified_at,
        }
        for r in reversed(requests)  # reversed: the first request of a pair is the one kept
    }
    if not rows:
        return set()
    statement = _jti_upsert(session.get_bind().dialect.name)
    returned = session.connection().execute(statement, list(rows.values()))
    return {(client_id, jti_) for client_id, jti_ in returned}


def _verified_at(request: IssueRequest, now: datetime) -> datetime:
    return now if request.verified_at is None else datetime.fromtimestamp(request.verified_at, UTC)


def issue_many(
    session: Session, requests: Sequence[IssueRequest], *, now: datetime, ttl: timedelta, purge: bool
) -> list[Outcome]:
    """One outcome per request, in order. Writes nothing for refused requests."""
    if purge:
        jti.purge(session, now=now)
    alive = _alive_keys(session, {r.key_id for r in requests})
    candidates = [r for r in requests if r.key_id in alive]
    recorded = _record_jtis(session, candidates, now)
    outcomes: list[Outcome] = []
    tokens: list[dict[str, Any]] = []
    for request in requests:
        pair = (request.client_id, request.jti)
        if request.key_id not in alive:
            outcomes.append(InvalidClient("unknown client"))
        elif pair not in recorded:
            outcomes.append(InvalidClient(REPLAY))
        else:
            recorded.discard(pair)  # a second request with the same pair in this batch is a replay
            token = new_secret(SecretKind.ACCESS_TOKEN)
            outcomes.append(token)
            tokens.append(_token_row(request, token, now, ttl))
    if tokens:
        session.connection().execute(_TOKEN_INSERT, tokens)
    _touch(session, {r.key_id for r in requests if r.touch_last_used and r.key_id in alive}, now)
    return outcomes


def _token_row(request: IssueRequest, token: str, now: datetime, ttl: timedelta) -> dict[str, Any]:
    return {
        "token_digest": digest(token),
        "environment_id": request.environment_id,
        "oauth_key_id": request.key_id,
        "legacy_api_key": None,
        "family_id": None,
        "scope": request.scope,
        "created_at": now,
        "expires_at": now + ttl,
        "revoked_at": None,
    }


def _touch(session: Session, key_ids: set[str], now: datetime) -> None:
    if key_ids:
        session.execute(sa.update(OAuthKey).where(OAuthKey.id.in_(key_ids)).values(last_used_at=now))


class TokenIssuer:
    """Batches ``issue`` calls into units of work for ``submit`` (the group committer)."""

    def __init__(self, submit: Submit, *, clock: Callable[[], datetime], ttl: timedelta) -> None:
        self._submit, self._clock, self._ttl = submit, clock, ttl
        self._pending: list[tuple[IssueRequest, asyncio.Future[Outcome]]] = []
        self._flushing = False
        self._purge_next = False
        self._task: asyncio.Task[None] | None = None  # referenced, so the loop does not drop it mid-flight

    def purge_with_next_batch(self) -> None:
        self._purge_next = True

    async def issue(self, request: IssueRequest) -> str:
        """The token in clear; raises InvalidClient for a replayed jti or a key deleted meanwhile."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if not self._flushing:
            self._flushing = True
            self._task = asyncio.get_running_loop().create_task(self._flush())
        outcome = await future
        if isinstance(outcome, InvalidClient):
            raise outcome
        return outcome

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._write(batch)
        finally:
            self._flushing = False

    async def _write(self, batch: list[tuple[IssueRequest, asyncio.Future[Outcome]]]) -> None:
        purge, self._purge_next = self._purge_next, False
        requests, now = [request for request, _ in batch], self._clock()
        try:
            outcomes = await self._submit(
                lambda session: issue_many(session, requests, now=now, ttl=self._ttl, purge=purge)
            )
        except Exception as exc:  # the batch failed as a whole (storage): every caller gets the error
            outcomes = [exc] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the caller went away
                continue
            if isinstance(outcome, Exception) and not isinstance(outcome, InvalidClient):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
