"""Synchronous requests: a Data Model ``...Query`` or a FHIR read/search goes to the source's single matching
destination and its answer comes back to the caller. Each one is logged with its request and response.

The use case, for any transport: ``find_route`` (404 none, 400 several), then ``exchange``: call the destination
within the request timeout, record request and answer durably, and only then answer 502 (the destination failed)
or 504 (it did not answer in time), or return its answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime

import anyio
import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.delivery_states import AttemptOutcome, DeliveryStatus
from healthway.domain.routing import MessageFacts, matches
from healthway.domain.sync_requests import Answer, Route
from healthway.errors import BadGateway, GatewayTimeout, InvalidRequest, NotFound
from healthway.services import intake
from healthway.services.deliveries import filters_of
from healthway.storage.db import Database
from healthway.storage.models import Attempt, Delivery, Destination, Subscription

MAX_LOGGED_RESPONSE = 256 * 1024


Submit = Callable[[Callable[[Session], str]], Awaitable[str]]
"""Runs a unit of work and returns its result once committed (the group committer's ``submit``)."""


async def find_route(
    db: Database, *, source_id: str, facts: MessageFacts | None, kinds: tuple[str, ...], ids: list[str] | None = None
) -> Route:
    """``destination_for`` in a read-only session, off the event loop."""

    def read() -> Route:
        with db.read_session() as session:
            return destination_for(session, source_id=source_id, facts=facts, kinds=kinds, destination_ids=ids)

    return await anyio.to_thread.run_sync(read)


async def exchange(
    call: Callable[[], Awaitable[Answer]],
    *,
    route: Route,
    submission: intake.Submission,
    within: float,
    clock: Callable[[], datetime],
    submit: Submit,
) -> Answer:
    """The destination's answer to ``call()``, recorded (committed through ``submit``) before anything is returned
    or raised. Raises GatewayTimeout when ``call`` raised TimeoutError or did not finish within ``within``
    seconds, BadGateway when the answer is not 2xx."""
    started, timed_out = clock(), False
    try:
        answer = await asyncio.wait_for(call(), within)
    except TimeoutError:
        timed_out = True
        answer = Answer(0, "", b"", f"no answer within {within:g} s")
    finished = clock()
    await submit(
        lambda s: record(s, submission=submission, route=route, answer=answer, started=started, finished=finished)
    )
    if timed_out:
        raise GatewayTimeout(f"the destination did not answer within {within:g} s")
    if not 200 <= answer.status_code < 300:
        raise BadGateway(f"the destination failed: {answer.detail}")
    return answer


def destination_for(
    session: Session,
    *,
    source_id: str,
    facts: MessageFacts | None,
    kinds: tuple[str, ...],
    destination_ids: list[str] | None = None,
) -> Route:
    """The one enabled subscribed destination of ``kinds`` whose filters match ``facts`` (None: any);
    404 for none, 400 for several."""
    rows = session.execute(
        sa.select(Subscription, Destination)
        .join(Destination, Destination.id == Subscription.destination_id)
        .where(Subscription.source_id == source_id, Subscription.enabled, Destination.enabled)
        .where(Destination.kind.in_(kinds))
    ).all()
    candidates = [
        (sub, dest)
        for sub, dest in rows
        if (facts is None or matches(filters_of(sub), facts))
        and (destination_ids is None or dest.id in destination_ids)
    ]
    if not candidates:
        raise NotFound(f"no {' or '.join(kinds)} destination of this source answers this request")
    if len(candidates) > 1:
        raise InvalidRequest("several destinations match this request; name one in Meta.Destinations")
    sub, dest = candidates[0]
    return Route(sub.id, dest.id, dest.kind, dict(dest.config))


def record(
    session: Session,
    *,
    submission: intake.Submission,
    route: Route,
    answer: Answer,
    started: datetime,
    finished: datetime,
) -> str:
    """Log the request (as the log's payload) and the destination's answer (as its one delivery attempt)."""
    response = {
        "status": answer.status_code,
        "content_type": answer.content_type,
        "size": len(answer.body),
        "body": answer.body[:MAX_LOGGED_RESPONSE].decode("utf-8", "replace"),
    }
    receipt = intake.store(session, replace(submission, routed=False, dedup_key=None, response=response))
    ok = 200 <= answer.status_code < 300
    delivery = Delivery(
        log_id=receipt.log_id,
        subscription_id=route.subscription_id,
        destination_id=route.destination_id,
        status=DeliveryStatus.DELIVERED if ok else DeliveryStatus.FAILED,
        created_at=started,
    )
    session.add(delivery)
    session.flush()
    session.add(
        Attempt(
            delivery_id=delivery.id,
            number=1,
            started_at=started,
            finished_at=finished,
            outcome=AttemptOutcome.DELIVERED if ok else AttemptOutcome.FAILED,
            response_code=str(answer.status_code) if answer.status_code else None,
            detail=answer.detail,
        )
    )
    return receipt.log_id
