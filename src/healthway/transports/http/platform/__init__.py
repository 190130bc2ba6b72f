"""The Platform API (``/platform/v1``): JSON management of everything, acting with the caller's roles.

Conventions: lists answer ``{"<plural>": [...], "next_cursor"}``; creates answer 201 with the object the CLI's
``--json`` prints; 401 without a valid personal access token, 403 for a missing permission, 404 for objects of
other organizations (their existence is never revealed).
"""

from fastapi import APIRouter

from healthway.transports.http.platform import (
    audit,
    destinations,
    invitations,
    legacy_keys,
    logs,
    mllp_peers,
    oauth_keys,
    organizations,
    replay,
    sources,
    subscriptions,
    tokens,
    users,
)

router = APIRouter(prefix="/platform/v1")
router.include_router(sources.router)
router.include_router(legacy_keys.router)
router.include_router(oauth_keys.router)
router.include_router(mllp_peers.router)
router.include_router(logs.router)
router.include_router(organizations.router)
router.include_router(users.router)
router.include_router(invitations.router)
router.include_router(tokens.router)
router.include_router(audit.router)
router.include_router(destinations.router)
router.include_router(subscriptions.router)
router.include_router(replay.router)
