"""Password login (with TOTP when the user has it), throttled per (account, client address).

Three steps, so that argon2 never runs inside a write transaction (on SQLite that would hold the one writer's
lock for every other request while a password is hashed):

1. ``begin`` reads the account and the throttle state (a read-only session);
2. the caller verifies the password in ``PasswordChecker``'s bounded pool (a flood of logins queues there
   without taking every request thread);
3. ``finish`` writes the outcome in one short transaction.

Throttling. Failures are kept in the database (``login_failures``), so they survive restarts and every node
sees them. Each (account, address) pair gets ``FREE_FAILURES`` tries, then a lockout that doubles with every
further failure (30 s, 1 min, 2 min, ... capped at ``MAX_LOCKOUT``): a guesser at another address cannot lock
the owner out, since the owner's own address has no failures. One address is also capped across every
account (``ADDRESS_LIMIT`` per ``WINDOW``). A throttled attempt is refused before the password is checked and
is not audited one by one: the first refusal of a lockout writes one event, the rest only add to a counter
that the pair's next audited login event reports (``refused_while_locked``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
import pyotp
import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain import passwords
from healthway.domain.actors import Actor, ActorType
from healthway.domain.audit import AuditAction
from healthway.domain.passwords import Passwords
from healthway.errors import PasswordChangeRequired, RateLimited, Unauthenticated
from healthway.services import audit, users
from healthway.storage.db import Database
from healthway.storage.models import LoginFailure, Membership, User

WINDOW = timedelta(hours=1)  # failures older than this count for nothing
FREE_FAILURES = 5  # per (account, address) before the first lockout
FIRST_LOCKOUT = timedelta(seconds=30)
MAX_LOCKOUT = timedelta(minutes=15)
ADDRESS_LIMIT = 30  # failures per client address within WINDOW, whatever the accounts
REFUSED = "invalid e-mail, password or one-time code"  # one message for every reason: no account enumeration
MUST_CHANGE = (
    "this password was generated and must be changed before use: PUT /platform/v1/account/password with "
    'HTTP Basic (e-mail and this password) and {"password": "<new>"}, or ask the operator to run '
    "`healthway user set-password`"
)


Verify = Callable[[str, str], tuple[bool, str | None]]  # (hash, password) → (matches, new hash if outdated)


class PasswordChecker:
    """Verifies passwords in a bounded pool of threads: at most ``limit`` argon2 computations at once.

    ``verify`` defaults to ``passwords.verify``; tests pass a slow or instrumented one.
    """

    def __init__(self, passwords: Passwords, limit: int = 2, verify: Verify | None = None) -> None:
        self._limiter = anyio.CapacityLimiter(limit)
        self._verify = verify or passwords.verify
        self._passwords = passwords

    @property
    def dummy_hash(self) -> str:
        """What an unknown account's password is checked against (the same work as a known one)."""
        return self._passwords.dummy_hash

    async def verify(self, password_hash: str, password: str) -> tuple[bool, str | None]:
        return await anyio.to_thread.run_sync(self._verify, password_hash, password, limiter=self._limiter)


@dataclass(frozen=True)
class Password:
    """Password-login credentials as presented (HTTP Basic + ``Healthway-TOTP`` today)."""

    email: str
    password: str
    totp: str | None  # the current one-time code, needed only when the user has TOTP


@dataclass(frozen=True)
class Attempt:
    email: str
    address: str
    user_id: str | None
    password_hash: str  # the user's, or a dummy one: an unknown account costs the same work
    totp_secret: str | None
    organization_id: str | None  # the organization the login is for (audit and token binding)


async def login(
    db: Database,
    checker: PasswordChecker,
    *,
    email: str,
    password: str,
    totp: str | None,
    address: str | None,
    now: datetime,
    organization_id: str | None = None,
    allow_must_change: bool = False,
) -> User:
    """The user whose credentials these are, audited as ``user:login`` in the organization concerned.

    Raises RateLimited (throttled), Unauthenticated (wrong e-mail, password or TOTP code; audited as
    ``user:login_failed``) or PasswordChangeRequired (a generated password not yet changed, unless
    ``allow_must_change``: the password-change route itself).
    """
    # No stored password is longer than MAX_LENGTH, so a cut one still fails, and huge inputs cost no more to hash.
    password = password[: passwords.MAX_LENGTH + 1]
    attempt = await anyio.to_thread.run_sync(
        lambda: begin(db, email=email, address=address, now=now, org=organization_id, unknown=checker.dummy_hash)
    )
    matches, new_hash = await checker.verify(attempt.password_hash, password)
    ok = matches and attempt.user_id is not None and _totp_ok(attempt.totp_secret, totp, now)
    return await anyio.to_thread.run_sync(
        lambda: finish(db, attempt, ok=ok, new_hash=new_hash, now=now, allow_must_change=allow_must_change)
    )


async def sign_in(
    db: Database,
    checker: PasswordChecker,
    credentials: Password,
    *,
    address: str | None,
    now: datetime,
    organization_id: str | None = None,
    allow_must_change: bool = False,
) -> Actor:
    """``login`` with ``credentials``; the user as the actor of what follows (bound to no organization: the
    caller decides where a token made from this login acts). Raises as ``login`` does."""
    user = await login(
        db,
        checker,
        email=credentials.email,
        password=credentials.password,
        totp=credentials.totp,
        address=address,
        now=now,
        organization_id=organization_id,
        allow_must_change=allow_must_change,
    )
    return Actor(ActorType.USER, id=user.id, label=user.email, address=address)


def begin(db: Database, *, email: str, address: str | None, now: datetime, org: str | None, unknown: str) -> Attempt:
    """Read what the check needs (``unknown``: the hash an unknown account is checked against); a throttled
    attempt is counted (short write) and refused here."""
    email, address = email.strip().lower()[:320], (address or "unknown")[:64]
    with db.read_session() as session:
        user = users.find_by_email(session, email)
        attempt = Attempt(
            email,
            address,
            user.id if user else None,
            user.password_hash if user else unknown,
            user.totp_secret if user else None,
            _concerned(session, user, org),
        )
        blocked = _blocked(session, email, address, now)
    if blocked is not None:
        _refuse(db, attempt, *blocked, now=now)
    return attempt


def finish(
    db: Database, attempt: Attempt, *, ok: bool, new_hash: str | None, now: datetime, allow_must_change: bool
) -> User:
    with db.session() as session:
        user = session.get(User, attempt.user_id) if attempt.user_id else None
        pair = _pair(attempt)
        refused = int(
            session.scalar(sa.select(sa.func.coalesce(sa.func.sum(LoginFailure.refused), 0)).where(*pair)) or 0
        )
        if user is None or not ok:
            _prune(session, now)
            session.add(LoginFailure(email=attempt.email, address=attempt.address, occurred_at=now))
            _audit(
                session,
                attempt,
                AuditAction.USER_LOGIN_FAILED,
                {"reason": "invalid credentials", "refused_while_locked": refused},
            )
            session.commit()
            raise Unauthenticated(REFUSED)
        session.execute(sa.delete(LoginFailure).where(*pair))  # the right password ends this pair's lockout
        if new_hash:
            user.password_hash = new_hash
        if user.password_must_change and not allow_must_change:
            session.commit()
            raise PasswordChangeRequired(MUST_CHANGE)
        user.last_login_at = now
        _audit(
            session,
            attempt,
            AuditAction.USER_LOGIN,
            {"rehashed": bool(new_hash), "refused_while_locked": refused},
            user,
        )
        return user


def _pair(attempt: Attempt) -> tuple[sa.ColumnElement[bool], ...]:
    return LoginFailure.email == attempt.email, LoginFailure.address == attempt.address


def _prune(session: Session, now: datetime) -> None:
    # Failures older than the window count for nothing: prune them here, so the table stays small.
    session.execute(sa.delete(LoginFailure).where(LoginFailure.occurred_at <= now - WINDOW))


def lockout(failures: int) -> timedelta:
    """How long the pair is locked after its latest failure: none for the first FREE_FAILURES, then doubling."""
    if failures < FREE_FAILURES:
        return timedelta(0)
    doublings = min(failures - FREE_FAILURES, 16)  # far past MAX_LOCKOUT already; keeps the number small
    return min(FIRST_LOCKOUT * (1 << doublings), MAX_LOCKOUT)


def _blocked(session: Session, email: str, address: str, now: datetime) -> tuple[datetime, int, int] | None:
    """(until, limit, the failure that holds the lock) when the attempt must be refused, else None."""
    recent = LoginFailure.occurred_at > now - WINDOW
    pair = session.execute(
        sa.select(LoginFailure.id, LoginFailure.occurred_at)
        .where(LoginFailure.email == email, LoginFailure.address == address, recent)
        .order_by(LoginFailure.occurred_at.desc(), LoginFailure.id.desc())
    ).all()
    if pair and pair[0].occurred_at + lockout(len(pair)) > now:
        return pair[0].occurred_at + lockout(len(pair)), FREE_FAILURES, pair[0].id
    by_address = session.execute(
        sa.select(LoginFailure.id, LoginFailure.occurred_at)
        .where(LoginFailure.address == address, recent)
        .order_by(LoginFailure.occurred_at.desc(), LoginFailure.id.desc())
        .limit(ADDRESS_LIMIT)
    ).all()
    if len(by_address) >= ADDRESS_LIMIT:
        return by_address[-1].occurred_at + WINDOW, ADDRESS_LIMIT, by_address[0].id
    return None


def _refuse(db: Database, attempt: Attempt, until: datetime, limit: int, anchor: int, *, now: datetime) -> None:
    """Count the refusal on the failure that holds the lock; audit only the first one of each lockout."""
    with db.session() as session:
        before = session.scalar(sa.select(LoginFailure.refused).where(LoginFailure.id == anchor))
        session.execute(
            sa.update(LoginFailure).where(LoginFailure.id == anchor).values(refused=LoginFailure.refused + 1)
        )
        if before == 0:
            _audit(
                session,
                attempt,
                AuditAction.USER_LOGIN_FAILED,
                {"reason": "throttled", "locked_until": until.isoformat()},
            )
    raise RateLimited(
        "too many failed logins; try again later",
        limit=limit,
        remaining=0,
        reset_at=int(until.timestamp()),
        retry_after=max(1, int((until - now).total_seconds() + 0.999)),
    )


def _concerned(session: Session, user: User | None, requested: str | None) -> str | None:
    """The organization a login concerns: the one asked for when the user belongs to it, else their only one,
    else none (an installation-wide event that no organization sees)."""
    if user is None:
        return None
    memberships = list(session.scalars(sa.select(Membership.organization_id).where(Membership.user_id == user.id)))
    if requested in memberships:
        return requested
    return memberships[0] if len(memberships) == 1 else None


def _audit(
    session: Session, attempt: Attempt, action: AuditAction, summary: dict[str, object], user: User | None = None
) -> None:
    if user is not None:
        actor = Actor(ActorType.USER, id=user.id, label=user.email, address=attempt.address)
    else:
        actor = Actor(ActorType.ANONYMOUS, address=attempt.address)  # nobody proved who they are
    if not summary.get("refused_while_locked"):
        summary.pop("refused_while_locked", None)
    audit.record(
        session,
        actor=actor,
        action=action,
        organization_id=attempt.organization_id,
        subject_type="user",
        subject_id=attempt.email,
        summary={"email": attempt.email, **summary},
    )


def _totp_ok(secret: str | None, code: str | None, now: datetime) -> bool:
    """No TOTP enrolled: nothing to check. Else the current code, or the one just before or after (clock skew)."""
    if secret is None:
        return True
    return code is not None and pyotp.TOTP(secret).verify(code.strip(), for_time=now, valid_window=1)
