"""The value types of a synchronous request: where it goes (``Route``) and what came back (``Answer``).

Shared by the use case (services.sync_requests chooses the route and logs the exchange) and the forwarder that
makes the call (delivery.requests), so neither layer imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    subscription_id: str
    destination_id: str
    kind: str
    config: dict[str, object]


@dataclass(frozen=True)
class Answer:
    status_code: int  # of the destination; 0 when it did not answer
    content_type: str
    body: bytes
    detail: str
