"""Synchronous requests (DESIGN §3): a ``...Query`` SEND forwarded to its one destination and answered with the
destination's response, and FHIR reads proxied to the source's ``fhir`` destination.

The transport finds the destination (``services.deliveries.query_destinations`` / ``fhir_destination``), calls
``Requester.query`` or ``Requester.fhir`` under ``HEALTHWAY_REQUEST_TIMEOUT``, and answers 200 with the response,
502 on ``DestinationUnavailable`` (or a non-2xx answer, as it sees fit), 504 when ``timed_out``.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from healthway.delivery.senders import Message, Target
from healthway.delivery.senders.fhir import DestinationUnavailable, FhirResponse, FhirSender
from healthway.delivery.senders.webhook import headers_for
from healthway.storage.models import Destination

__all__ = ["DestinationUnavailable", "FhirResponse", "Requester", "target_of"]


def target_of(destination: Destination) -> Target:
    return Target(destination.id, destination.kind, dict(destination.config))


class Requester:
    """One pooled HTTP client for synchronous requests; ``aclose`` it when the server stops."""

    def __init__(self, *, timeout: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._timeout = timeout
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False)
        self._fhir = FhirSender(timeout=timeout, transport=transport)

    async def query(self, target: Target, message: Message) -> FhirResponse:
        """POST the query to a webhook destination (signed like any delivery) or a FHIR server; its answer."""
        if target.kind == "fhir":
            return await self._fhir.request(target, method="POST", path="", body=message.payload)
        try:
            response = await self._client.post(
                target.config["url"], content=message.payload, headers=headers_for(target, message)
            )
        except httpx.TimeoutException:
            raise DestinationUnavailable("the destination did not answer in time", timed_out=True) from None
        except httpx.HTTPError as exc:
            reason = f"the destination is unreachable: {type(exc).__name__}"
            raise DestinationUnavailable(reason, timed_out=False) from None
        return FhirResponse(response.status_code, response.headers.get("content-type", ""), response.content)

    async def fhir(
        self, target: Target, *, method: str, path: str, params: Mapping[str, str] | None = None
    ) -> FhirResponse:
        """Proxy one FHIR interaction (``GET /fhir/R4/{type}``, ``/{type}/{id}``) to the destination."""
        return await self._fhir.request(target, method=method, path=path, params=params)

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._fhir.aclose()
