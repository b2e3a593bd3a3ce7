"""Every Prometheus metric the engine exports, defined in one place.

Each daemon owns one ``Metrics`` (its own registry), so tests can run several
engines in one process without sharing counters.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

DELIVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 60.0, 3600.0)
"""Delivery latency: milliseconds when all is well, hours when retries were needed."""

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

        self.reloads = Counter(
            "hookwire_config_reloads",
            "Reloads of the config file (SIGHUP, POST /v1/reload), by result: applied or "
            "refused (a problem in the file: nothing changed).",
            ["result"],
            registry=r,
        )
        self.hooks_by_source = Gauge(
            "hookwire_hooks",
            "Hooks, by where they come from: config (the file) or api (created through it).",
            ["source"],
            registry=r,
        )
        self.gateway_connections = Gauge(
            "hookwire_gateway_connections", "Gateway connections open.", registry=r
        )
        self.gateway_frames_in = Counter(
            "hookwire_gateway_frames_in",
            "Frames received from gateways, by op.",
            ["op"],
            registry=r,
        )
        self.gateway_frames_out = Counter(
            "hookwire_gateway_frames_out", "Frames sent to gateways, by op.", ["op"], registry=r
        )
        self.gateway_acks = Counter(
            "hookwire_gateway_publishes_acked",
            "Gateway publishes acknowledged (stored, or duplicates of stored ones).",
            registry=r,
        )
        self.gateway_nacks = Counter(
            "hookwire_gateway_publishes_nacked",
            "Gateway publishes refused (invalid, forbidden, or the journal could not write).",
            registry=r,
        )
        self.gateway_duplicates = Counter(
            "hookwire_gateway_dedupe_hits",
            "Gateway publishes seen before within the dedupe window: acknowledged, not stored.",
            registry=r,
        )
        self.gateway_outbox_depth = Gauge(
            "hookwire_gateway_outbox_depth",
            "Downlinks waiting in the journal's outbox for a gateway to acknowledge them.",
            registry=r,
        )
        self.gateway_downlinks_acked = Counter(
            "hookwire_gateway_downlinks_acked", "Downlinks acknowledged by gateways.", registry=r
        )
        self.gateway_downlinks_expired = Counter(
            "hookwire_gateway_downlinks_expired",
            "Downlinks dropped from the outbox unacknowledged after their TTL.",
            registry=r,
        )

        self.delivery_counts = DeliveryCounts()
        r.register(_DeliveryCollector(self.delivery_counts))

    def watch_destinations(self, destinations: Callable[[], Iterable[DestinationState]]) -> None:
        """Report queue depth, in-flight attempts and breaker state of each destination."""
        self.registry.register(_DestinationCollector(destinations))

    def watch_journal(self, journal: JournalState) -> None:
        """Report the journal's commits, failures and the range of event ids it keeps."""
        self.registry.register(_JournalCollector(journal))

    def watch_tls(self, failures: Mapping[str, Callable[[], int]]) -> None:
        """Report the TLS handshakes that failed or did not end in time, per listener
        (``api``, ``gateway``), read from them at scrape time."""
        self.registry.register(_TlsCollector(failures))

    def render(self) -> bytes:
        """The text exposition format, for GET /metrics."""
        return generate_latest(self.registry)


class DestinationState(Protocol):
    """What a delivery destination shows to metrics (engine.delivery.destination)."""

    @property
    def depth(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def breaker_state(self) -> int: ...
    @property
    def name(self) -> str: ...


class _DestinationCollector:
    """Reads the destinations at scrape time: nothing is counted per event."""

    def __init__(self, destinations: Callable[[], Iterable[DestinationState]]) -> None:
        self._destinations = destinations

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "hookwire_destination_queue_depth",
            "Deliveries queued for a destination (ready or waiting to retry).",
            labels=["destination"],
        )
        in_flight = GaugeMetricFamily(
            "hookwire_destination_in_flight",
            "Attempts in progress to a destination.",
            labels=["destination"],
        )
        breaker = GaugeMetricFamily(
            "hookwire_destination_breaker_state",
            "Circuit breaker of a destination: 0 closed, 1 half-open, 2 open.",
            labels=["destination"],
        )
        for destination in self._destinations():
            depth.add_metric([destination.name], destination.depth)
            in_flight.add_metric([destination.name], destination.in_flight)
            breaker.add_metric([destination.name], destination.breaker_state)
        yield depth
        yield in_flight
        yield breaker


class JournalState(Protocol):
    """What the durable journal shows to metrics (engine.journal.sqlite)."""

    commits: int
    failed_commits: int
    writes: int
    events_stored: int

    def last_id(self) -> int: ...
    def oldest_id(self) -> int: ...


class _TlsCollector:
    def __init__(self, failures: Mapping[str, Callable[[], int]]) -> None:
        self._failures = failures

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "hookwire_tls_handshake_failures",
            "TLS handshakes that failed or did not end in time (a plain-HTTP client on the"
            " TLS port, a certificate the client refused, a client that stalled).",
            labels=["listener"],
        )
        for listener, count in self._failures.items():
            family.add_metric([listener], count())
        yield family


class _JournalCollector:
    def __init__(self, journal: JournalState) -> None:
        self._journal = journal

    def collect(self) -> Iterator[Metric]:
        journal = self._journal
        yield CounterMetricFamily(
            "hookwire_journal_commits",
            "Journal transactions committed (each one fsync, shared by every write waiting).",
            journal.commits,
        )
        yield CounterMetricFamily(
            "hookwire_journal_writes",
            "Writes committed (appends, attempt batches...): writes/commits is the group size.",
            journal.writes,
        )
        yield CounterMetricFamily(
            "hookwire_journal_events_stored",
            "Events committed, the engine's own (hook-sent, hook-response...) included:"
            " commits/events_stored is the fsyncs paid per event.",
            journal.events_stored,
        )
        yield CounterMetricFamily(
            "hookwire_journal_commit_failures",
            "Journal transactions rolled back (disk full, I/O error, lock held too long).",
            journal.failed_commits,
        )
        yield GaugeMetricFamily(
            "hookwire_journal_last_event_id", "Id of the newest stored event.", journal.last_id()
        )
        yield GaugeMetricFamily(
            "hookwire_journal_oldest_event_id",
            "Id of the oldest event still retained (older ones were pruned).",
            journal.oldest_id(),
        )


class DeliveryCounts:
    """Delivery metrics as plain numbers, bumped per attempt and read at scrape time.

    prometheus-client's metrics take a lock per update; on the delivery path that was a
    measurable share of the time, so these are exported by a collector instead.
    """

    def __init__(self) -> None:
        self.outcomes: Tally[tuple[str, str]] = Tally()  # (hook, delivered|dead)
        self.last_delivered: dict[str, float] = {}  # hook -> unix time
        self.last_failed: dict[str, tuple[float, str]] = {}  # hook -> (unix time, status class)
        self.attempts: Tally[str] = Tally()  # status class: 2xx..5xx, error
        self.latency_buckets = [0] * (len(DELIVERY_BUCKETS) + 1)
        self.latency_sum = 0.0

    def observe_latency(self, seconds: float) -> None:
        self.latency_buckets[bisect_left(DELIVERY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds


class _DeliveryCollector:
    def __init__(self, counts: DeliveryCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        counts = self._counts
        deliveries = CounterMetricFamily(
            "hookwire_deliveries",
            "Webhook deliveries finished, by hook and outcome (delivered or dead).",
            labels=["hook", "outcome"],
        )
        for (hook, outcome), n in sorted(counts.outcomes.items()):
            deliveries.add_metric([hook, outcome], n)
        attempts = CounterMetricFamily(
            "hookwire_delivery_attempts",
            "Webhook attempts, by status class (2xx..5xx, or error when no answer came).",
            labels=["status_class"],
        )
        for status_class, n in sorted(counts.attempts.items()):
            attempts.add_metric([status_class], n)
        cumulative, buckets = 0, []
        for bound, n in zip((*DELIVERY_BUCKETS, float("inf")), counts.latency_buckets, strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
        latency = HistogramMetricFamily(
            "hookwire_delivery_latency_seconds",
            "From an event being accepted to its webhook answering 2xx (retries included).",
            buckets=buckets,
            sum_value=counts.latency_sum,
        )
        yield deliveries
        yield attempts
        yield latency
