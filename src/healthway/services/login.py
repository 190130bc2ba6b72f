"""Password login (with TOTP when the user has it), throttled per account and per client address.

Failures are counted in the database (``login_failures``), so throttling survives restarts and is shared by
every node on PostgreSQL. A throttled attempt is refused before the password is even checked, and is not
counted itself: otherwise a steady guesser would keep the account locked for ever.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache

import pyotp
import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session

from healthway.domain import passwords
from healthway.domain.actors import Actor, ActorType
from healthway.domain.audit import AuditAction
from healthway.errors import RateLimited, Unauthenticated
from healthway.services import audit, users
from healthway.storage.models import LoginFailure, User

WINDOW = timedelta(minutes=15)
ACCOUNT_LIMIT = 5  # failures per account within WINDOW
ADDRESS_LIMIT = 20  # failures per client address within WINDOW, whatever the accounts
REFUSED = "invalid e-mail, password or one-time code"  # one message for every reason: no account enumeration


def login(
    session: Session, *, email: str, password: str, totp: str | None = None, address: str | None, now: datetime
) -> User:
    """The user whose credentials these are, audited as ``user:login``; rehashes an outdated password hash.

    Raises RateLimited (throttled) or Unauthenticated (wrong e-mail, password or TOTP code), each audited as
    ``user:login_failed`` (never with the password). A refusal commits ``session`` before raising: the
    failure must be remembered although the caller's unit of work fails.
    """
    email, address = email.strip().lower()[:320], (address or "unknown")[:64]
    # No stored password is longer than MAX_LENGTH, so a cut one still fails, and huge inputs cost no more to hash.
    password = password[: passwords.MAX_LENGTH + 1]
    user = users.find_by_email(session, email)
    _refuse_if_throttled(session, email=email, address=address, user=user, now=now)
    ok, new_hash = _check_credentials(user, password, totp, now)
    if user is None or not ok:
        _record_failure(session, email=email, address=address, user=user, now=now, reason="invalid credentials")
        raise Unauthenticated(REFUSED)
    if new_hash:
        user.password_hash = new_hash
    user.last_login_at = now
    session.execute(sa.delete(LoginFailure).where(LoginFailure.email == email))
    actor = Actor(ActorType.USER, id=user.id, label=user.email, address=address)
    users.record_about(
        session,
        actor=actor,
        action=AuditAction.USER_LOGIN,
        user=user,
        subject_type="user",
        subject_id=user.email,
        summary={"rehashed": bool(new_hash)},
    )
    return user


def _check_credentials(user: User | None, password: str, totp: str | None, now: datetime) -> tuple[bool, str | None]:
    """(accepted, a new hash when the stored one uses outdated parameters)."""
    if user is None:
        passwords.verify_password(_dummy_hash(), password)  # same work as a real check: no timing oracle
        return False, None
    matches, new_hash = passwords.verify_password(user.password_hash, password)
    return matches and _totp_ok(user.totp_secret, totp, now), new_hash


def _totp_ok(secret: str | None, code: str | None, now: datetime) -> bool:
    """No TOTP enrolled: nothing to check. Else the current code, or the one just before or after (clock skew)."""
    if secret is None:
        return True
    return code is not None and pyotp.TOTP(secret).verify(code.strip(), for_time=now, valid_window=1)


@cache
def _dummy_hash() -> str:
    return passwords.hash_password("not a password anyone has: timing equalizer")


def _refuse_if_throttled(session: Session, *, email: str, address: str, user: User | None, now: datetime) -> None:
    for column, value, limit in (
        (LoginFailure.email, email, ACCOUNT_LIMIT),
        (LoginFailure.address, address, ADDRESS_LIMIT),
    ):
        until = _blocked_until(session, column, value, limit, now)
        if until is not None:
            _audit_failure(session, email=email, address=address, user=user, reason="throttled")
            session.commit()
            retry_after = max(1, int((until - now).total_seconds() + 0.999))
            raise RateLimited(
                "too many failed logins; try again later",
                limit=limit,
                remaining=0,
                reset_at=int(until.timestamp()),
                retry_after=retry_after,
            )


def _blocked_until(
    session: Session, column: InstrumentedAttribute[str], value: str, limit: int, now: datetime
) -> datetime | None:
    """When the ``limit`` newest failures within the window fall below the limit again (None: not blocked)."""
    times = session.scalars(
        sa.select(LoginFailure.occurred_at)
        .where(column == value, LoginFailure.occurred_at > now - WINDOW)
        .order_by(LoginFailure.occurred_at.desc())
        .limit(limit)
    ).all()
    return times[-1] + WINDOW if len(times) >= limit else None


def _record_failure(
    session: Session, *, email: str, address: str, user: User | None, now: datetime, reason: str
) -> None:
    # Failures older than the window count for nothing: prune them here, so the table stays small.
    session.execute(sa.delete(LoginFailure).where(LoginFailure.occurred_at <= now - WINDOW))
    session.add(LoginFailure(email=email, address=address, occurred_at=now))
    _audit_failure(session, email=email, address=address, user=user, reason=reason)
    session.commit()


def _audit_failure(session: Session, *, email: str, address: str, user: User | None, reason: str) -> None:
    actor = Actor(ActorType.ANONYMOUS, address=address)  # nobody proved who they are
    summary = {"email": email, "reason": reason}
    if user is not None:
        users.record_about(
            session,
            actor=actor,
            action=AuditAction.USER_LOGIN_FAILED,
            user=user,
            subject_type="user",
            subject_id=user.email,
            summary=summary,
        )
    else:  # no such account: an installation-wide event, visible to no organization
        audit.record(
            session,
            actor=actor,
            action=AuditAction.USER_LOGIN_FAILED,
            organization_id=None,
            subject_type="user",
            subject_id=email,
            summary=summary,
        )
