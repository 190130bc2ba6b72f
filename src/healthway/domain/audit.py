"""Audit actions (``subject:action``) and the hash chain that makes tampering detectable."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any

import orjson

GENESIS = "0" * 64


class AuditAction(StrEnum):
    ORG_CREATE = "org:create"
    ORG_UPDATE = "org:update"
    USER_CREATE = "user:create"
    USER_LOGIN = "user:login"
    USER_LOGIN_FAILED = "user:login_failed"
    USER_PASSWORD_CHANGE = "user:password_change"
    USER_REMOVE = "user:remove"  # a membership ends (or a pending invitation is withdrawn)
    INVITATION_CREATE = "invitation:create"
    INVITATION_ACCEPT = "invitation:accept"
    INVITATION_DECLINE = "invitation:decline"
    ROLE_ASSIGN = "role:assign"
    ROLE_REMOVE = "role:remove"
    TOKEN_CREATE = "token:create"
    TOKEN_REVOKE = "token:revoke"
    SOURCE_CREATE = "source:create"
    SOURCE_UPDATE = "source:update"
    SOURCE_DELETE = "source:delete"
    OAUTH_KEY_CREATE = "oauth_key:create"
    OAUTH_KEY_DELETE = "oauth_key:delete"
    ASSERTION_REJECT = "assertion:reject"
    LEGACY_KEY_CREATE = "legacy_key:create"
    LEGACY_KEY_ROTATE = "legacy_key:rotate"
    SFTP_ACCOUNT_CREATE = "sftp_account:create"
    MLLP_PEER_CREATE = "mllp_peer:create"
    MLLP_PEER_REMOVE = "mllp_peer:remove"
    MLLP_PEER_REFUSED = "mllp_peer:refused"  # a connection from an address no source allows
    DESTINATION_CREATE = "destination:create"
    DESTINATION_UPDATE = "destination:update"
    DESTINATION_DELETE = "destination:delete"
    SUBSCRIPTION_CREATE = "subscription:create"
    SUBSCRIPTION_UPDATE = "subscription:update"
    SUBSCRIPTION_DELETE = "subscription:delete"
    PAYLOAD_VIEW = "payload:view"
    LOG_REPLAY = "log:replay"


def chain_digest(prev_digest: str, fields: dict[str, Any]) -> str:
    """SHA-256 over the previous digest and the event's canonical JSON (sorted keys)."""
    body = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_digest.encode() + body).hexdigest()
