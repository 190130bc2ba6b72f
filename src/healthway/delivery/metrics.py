"""Prometheus metrics of delivery: outcomes per destination, attempt latency, queue depth, oldest pending age."""

from __future__ import annotations

import time
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy.orm import Session

from healthway.delivery.senders import Target
from healthway.domain.retry import AttemptResult
from healthway.storage import queue

REFRESH_SECONDS = 1.0  # the queue gauges cost a query; once a second is plenty for a scrape


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "healthway_delivery_attempts",
            "Delivery attempts by destination kind and outcome",
            ["kind", "outcome"],  # no destination ID: metrics are installation-wide, IDs belong to tenants
            registry=registry,
        )
        self.latency = Histogram(
            "healthway_delivery_attempt_duration_seconds",
            "Time one delivery attempt took",
            ["kind"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.depth = Gauge("healthway_delivery_queue_depth", "Pending deliveries", registry=registry)
        self.oldest = Gauge(
            "healthway_delivery_oldest_pending_seconds", "Age of the oldest pending delivery", registry=registry
        )
        self._refreshed = 0.0

    def observe(self, target: Target, result: AttemptResult, seconds: float) -> None:
        self.attempts.labels(target.kind, result.outcome.value).inc()
        self.latency.labels(target.kind).observe(seconds)

    def refresh(self, session: Session, now: datetime) -> None:
        if time.monotonic() - self._refreshed < REFRESH_SECONDS:
            return
        self._refreshed = time.monotonic()
        count, oldest = queue.depth(session)
        self.depth.set(count)
        self.oldest.set((now - oldest).total_seconds() if oldest else 0)
