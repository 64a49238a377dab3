"""Prometheus metrics: requests and events by source, deliveries by destination, backlog."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway.store.base import StoreStats


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._requests = Counter(
            "trackgate_requests", "Ingest requests by source and result", ["source", "result"], registry=r
        )
        self._events = Counter(
            "trackgate_events", "Ingested events by source and result", ["source", "result"], registry=r
        )
        self._deliveries = Counter(
            "trackgate_deliveries",
            "Events by destination and delivery outcome (delivered, retry, dead)",
            ["destination", "outcome"],
            registry=r,
        )
        self._duplicates = Counter(
            "trackgate_delivery_possible_duplicates",
            "Events retried after a request the destination may already have taken, where it cannot dedupe",
            ["destination"],
            registry=r,
        )
        self._paused = Gauge(
            "trackgate_destination_paused", "1 while a destination refuses trackgate's credentials", ["destination"], registry=r
        )
        self._latency = Histogram(
            "trackgate_delivery_request_seconds",
            "Time of one request to a destination",
            ["destination"],
            registry=r,
        )
        self._backlog = Gauge("trackgate_backlog_events", "Events waiting per destination", ["destination"], registry=r)
        self._oldest = Gauge(
            "trackgate_oldest_pending_age_seconds", "Age of the oldest waiting event", ["destination"], registry=r
        )
        self._dead = Gauge("trackgate_dead_letters", "Dead letters per destination", ["destination"], registry=r)
        self._backlog_bytes = Gauge("trackgate_backlog_bytes", "Bytes of undelivered events", registry=r)
        self._bound: dict = {}

    def _child(self, metric, *labels):
        key = (id(metric), labels)
        child = self._bound.get(key)
        if child is None:
            child = self._bound[key] = metric.labels(*labels)
        return child

    def request(self, source: str, result: str) -> None:
        self._child(self._requests, source, result).inc()

    def events(self, source: str, result: str, n: int) -> None:
        if n:
            self._child(self._events, source, result).inc(n)

    def delivery(self, destination: str, outcome: str, n: int) -> None:
        if n:
            self._child(self._deliveries, destination, outcome).inc(n)

    def possible_duplicates(self, destination: str, n: int) -> None:
        if n:
            self._child(self._duplicates, destination).inc(n)

    def paused(self, destination: str, paused: bool) -> None:
        self._child(self._paused, destination).set(1 if paused else 0)

    def delivery_latency(self, destination: str, seconds: float) -> None:
        self._child(self._latency, destination).observe(seconds)

    def render(self, stats: StoreStats) -> bytes:
        for name, dest in stats.destinations.items():
            self._backlog.labels(name).set(dest.pending)
            self._oldest.labels(name).set(dest.oldest_pending_age_s)
            self._dead.labels(name).set(dest.dead_letters)
        self._backlog_bytes.set(stats.backlog_bytes)
        return generate_latest(self.registry)
