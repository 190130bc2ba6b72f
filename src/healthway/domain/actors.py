"""Who is acting: the installation's operator (CLI), a user (personal access token or dashboard), or a key."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ActorType(StrEnum):
    CLI = "cli"
    USER = "user"
    OAUTH_KEY = "oauth_key"
    LEGACY_KEY = "legacy_key"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Actor:
    type: ActorType
    id: str | None = None  # user id, client_id or api_key
    label: str | None = None  # e-mail for users
    address: str | None = None  # client IP address
    organization_id: str | None = None  # the organization a user's personal access token is bound to

    @property
    def is_operator(self) -> bool:
        """The CLI acts as the installation's operator, with full rights (like a database superuser)."""
        return self.type is ActorType.CLI


CLI = Actor(ActorType.CLI, id="cli", label="cli")
DELIVERY = Actor(ActorType.ANONYMOUS, id="delivery", label="delivery worker")  # changes the worker makes itself
