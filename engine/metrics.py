"""Every Prometheus metric the engine exports, defined in one place.

Each daemon owns one ``Metrics`` (its own registry), so tests can run several
engines in one process without sharing counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Request latency buckets in seconds: most answers take well under a millisecond."""


class Metrics:
    """The engine's metrics and the registry that exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_published = Counter(
            "hookwire_events_published",
            "Events stored and fanned out, by where they came from.",
            ["source"],
            registry=r,
        )
        self.sse_subscribers = Gauge(
            "hookwire_sse_subscribers", "Open Server-Sent Events streams.", registry=r
        )
        self.sse_events_sent = Counter(
            "hookwire_sse_events_sent", "Events written to SSE subscribers.", registry=r
        )
        self.sse_dropped = Counter(
            "hookwire_sse_subscribers_dropped",
            "SSE subscribers disconnected because their buffer was full.",
            registry=r,
        )
        self.http_requests = Counter(
            "hookwire_http_requests",
            "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_request_duration = Histogram(
            "hookwire_http_request_duration_seconds",
            "Time from a complete request to its answer being written, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_protocol_errors = Counter(
            "hookwire_http_protocol_errors",
            "Connections closed because the peer sent bytes that are not HTTP/1.1.",
            ["status"],
            registry=r,
        )

    def render(self) -> bytes:
        """The text exposition format, for GET /metrics."""
        return generate_latest(self.registry)
