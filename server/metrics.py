"""Prometheus metrics of one app, in a registry of its own so that several apps in one process do not collide."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServiceMetrics:
    """Requests by route and status, their latency, images generated, errors by kind, the version served."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("genmem_requests", "HTTP requests answered, by route template, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("genmem_request_seconds", "Time to answer an HTTP request, by route template",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.samples = Counter("genmem_samples", "Images generated and sent", registry=self.registry)
        self.errors = Counter("genmem_errors", "Requests refused or failed, by kind of error", ["kind"],
                              registry=self.registry)
        self.version = Info("genmem_served_version", "The memory version served by default",
                            registry=self.registry)

    def exposition(self, served_version: str | None) -> bytes:
        """The Prometheus text format, with the version served now."""
        self.version.info({"version": served_version or "none"})
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware that counts and times every HTTP request by its route template (not its raw path)."""

    def __init__(self, app, metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_and_note_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - start)
