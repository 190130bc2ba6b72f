"""MLLP peers: which networks (and client certificates) a source's MLLP connections may come from.

Managed like the source itself (``sources:write``: engineers and admins), audited. A network of one source may not
overlap a network of another source in any environment: the listener maps each connection to exactly one source by
its address, before reading a byte. The refusal names the other source only when the caller may see it (same
environment); otherwise it says only that the network is taken.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain import mllp_peers
from healthway.domain.actors import Actor, ActorType
from healthway.domain.audit import AuditAction
from healthway.domain.mllp_peers import Peer
from healthway.domain.permissions import Permission
from healthway.errors import Conflict
from healthway.services import audit, authz, callers
from healthway.services.paging import EnvironmentScope, Page, View
from healthway.storage.db import Database
from healthway.storage.models import Environment, MllpPeer, Source

REFRESH_SECONDS = 2.0  # a peer added or removed takes effect for new connections within this
REFUSAL_AUDIT_SECONDS = 60.0  # at most one audit event per refused address per minute
MAX_REMEMBERED_REFUSALS = 10_000  # a scan from many addresses must not grow memory without bound


def all_peers(session: Session) -> list[Peer]:
    """Every peer of every source: what the listener matches connections against."""
    rows = session.execute(sa.select(MllpPeer, Source.environment_id).join(Source))
    return [
        Peer(peer.id, peer.source_id, environment_id, mllp_peers.parse_cidr(peer.cidr), peer.client_cert_sha256)
        for peer, environment_id in rows
    ]


def add(
    session: Session,
    *,
    actor: Actor,
    source: Source,
    environment: Environment,
    cidr: str,
    client_cert_sha256: str | None = None,
) -> MllpPeer:
    authz.require_env(session, actor, Permission.SOURCES_WRITE, environment)
    network = mllp_peers.parse_cidr(cidr)
    fingerprint = mllp_peers.parse_fingerprint(client_cert_sha256) if client_cert_sha256 else None
    taken = mllp_peers.overlapping(network, source.id, all_peers(session))
    if taken is not None:
        whose = f"source {taken.source_id}" if taken.environment_id == environment.id else "another source"
        raise Conflict(f"{network} overlaps {taken.network} of {whose}: a connection must map to one source")
    peer = MllpPeer(source_id=source.id, cidr=str(network), client_cert_sha256=fingerprint)
    session.add(peer)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=AuditAction.MLLP_PEER_CREATE,
        organization_id=environment.organization_id,
        subject_type="mllp_peer",
        subject_id=peer.id,
        summary={"source_id": source.id, "cidr": peer.cidr, "client_cert_sha256": fingerprint},
    )
    return peer


def visible(session: Session, *, actor: Actor, peer_id: str, permission: Permission) -> tuple[MllpPeer, Environment]:
    """The peer and its environment, if the actor holds ``permission`` there; NotFound otherwise."""
    return authz.visible(session, actor, permission, find(session, peer_id), "MLLP peer")


def find(session: Session, peer_id: str) -> tuple[MllpPeer, Environment] | None:
    query = (
        sa.select(MllpPeer, Environment)
        .select_from(MllpPeer)
        .join(Source, Source.id == MllpPeer.source_id)
        .join(Environment, Environment.id == Source.environment_id)
        .where(MllpPeer.id == peer_id)
    )
    row = session.execute(query).first()
    return (row[0], row[1]) if row else None


def in_environments(environment_ids: Sequence[str]) -> sa.Select[MllpPeer]:
    return sa.select(MllpPeer).join(Source).where(Source.environment_id.in_(environment_ids))


def remove(session: Session, *, actor: Actor, peer: MllpPeer, environment: Environment) -> None:
    authz.require_env(session, actor, Permission.SOURCES_WRITE, environment)
    session.delete(peer)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.MLLP_PEER_REMOVE,
        organization_id=environment.organization_id,
        subject_type="mllp_peer",
        subject_id=peer.id,
        summary={"source_id": peer.source_id, "cidr": peer.cidr},
    )


class PeerDirectory:
    """The listener's view of every source's peers, read from the database at most every ``REFRESH_SECONDS``
    (so a flood of connections costs no query each), and the audit of refused addresses. Thread-safe: called
    from the listener's worker threads."""

    def __init__(self, db: Database, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._peers: list[Peer] = []
        self._read_at: float | None = None
        self._refused: dict[str, float] = {}

    def match(self, host: str) -> list[Peer]:
        """The peers whose network holds ``host`` (all of one source); empty: refuse the connection."""
        return mllp_peers.match(host, self._current())

    def refuse(self, host: str) -> None:
        """Audit a refused connection from ``host``, unless this address was audited less than a minute ago."""
        now = self._monotonic()
        with self._lock:
            if now - self._refused.get(host, -REFUSAL_AUDIT_SECONDS) < REFUSAL_AUDIT_SECONDS:
                return
            if len(self._refused) >= MAX_REMEMBERED_REFUSALS:
                self._refused.clear()
            self._refused[host] = now
        actor = Actor(ActorType.ANONYMOUS, address=host)
        with self._db.session() as session:
            audit.record(session, actor=actor, action=AuditAction.MLLP_PEER_REFUSED, organization_id=None)

    def _current(self) -> list[Peer]:
        now = self._monotonic()
        with self._lock:
            if self._read_at is None or now - self._read_at >= REFRESH_SECONDS:
                with self._db.read_session() as session:
                    self._peers = all_peers(session)
                self._read_at = now
            return self._peers


def view(peer: MllpPeer, environment: Environment) -> View:
    """One peer on the wire (the CLI's ``--json`` and the Platform API)."""
    return {
        "id": peer.id,
        "source_id": peer.source_id,
        "environment": environment.name,
        "cidr": peer.cidr,
        "client_cert_sha256": peer.client_cert_sha256,
        "created_at": peer.created_at.isoformat(),
    }


def list_page(
    session: Session, *, actor: Actor, scope: EnvironmentScope, cursor: str | None = None, limit: int = 100
) -> Page[View]:
    """MLLP peers of the scope's environments whose sources the actor may read, oldest first."""
    envs, rows, next_cursor = callers.environment_rows(
        session,
        actor=actor,
        scope=scope,
        permission=Permission.SOURCES_READ,
        query_for=in_environments,
        created_at=MllpPeer.created_at,
        row_id=MllpPeer.id,
        cursor=cursor,
        limit=limit,
    )
    source_ids = {peer.source_id for peer in rows}
    env_of = dict(session.execute(sa.select(Source.id, Source.environment_id).where(Source.id.in_(source_ids))).all())
    return Page([view(peer, envs[env_of[peer.source_id]]) for peer in rows], next_cursor)
