"""Prometheus request counters and latency per route template, as a pure ASGI middleware, and
the catalog versions the process serves."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.page_store import PageStore
from service.services.catalogs import CatalogWatcher, ServedCatalogs


class RequestMetrics:
    """One registry per app, so that several apps in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "upshift_http_requests",
            "HTTP requests by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "upshift_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.problems = Counter(
            "upshift_problems",
            "Refusals (problem+json) by stable code: quote_changed counts offers whose amount "
            "the billing provider did not confirm",
            ["code"],
            registry=self.registry,
        )

        self.renewals = Counter(
            "upshift_renewals",
            "Periods renewed and invoiced by this process's renewal worker (local billing)",
            registry=self.registry,
        )
        self.renewal_lag = Gauge(
            "upshift_renewal_lag_seconds",
            "How late the oldest due renewal was after the worker's last round (0: none due)",
            registry=self.registry,
        )

    def watch_catalogs(self, served: ServedCatalogs, watcher: CatalogWatcher) -> None:
        """The catalog versions this process serves, read at each scrape: replicas that serve
        different versions, or a version refused, show here."""
        self.registry.register(CatalogCollector(served, watcher))

    def watch_page_store(self, store: PageStore) -> None:
        """What this process's misses did with the offers read model, read at each scrape."""
        self.registry.register(PageStoreCollector(store))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = _route_template(scope)
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


def _route_template(scope: dict[str, Any]) -> str:
    # Label by template, never by raw path: account ids in labels would explode cardinality.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class CatalogCollector(Collector):
    def __init__(self, served: ServedCatalogs, watcher: CatalogWatcher) -> None:
        self.served = served
        self.watcher = watcher

    def collect(self) -> Iterator[Metric]:
        history = self.served.history
        in_force = self.served.in_force().version
        loaded = GaugeMetricFamily(
            "upshift_catalog_version",
            "Catalog versions this process serves (1 each), with their effective_from; "
            'in_force="true" marks the one new business gets now',
            labels=["version", "effective_from", "in_force"],
        )
        for catalog in history.versions:
            loaded.add_metric(
                [
                    catalog.version,
                    catalog.effective_from.isoformat(),
                    str(catalog.version == in_force).lower(),
                ],
                1,
            )
        yield loaded
        yield GaugeMetricFamily(
            "upshift_catalog_refused_versions",
            "Published catalog versions this process refused to serve (see its log)",
            value=len(self.watcher.refused),
        )
        if self.watcher.checked_at is not None:
            yield GaugeMetricFamily(
                "upshift_catalog_checked_timestamp_seconds",
                "When this process last read the published catalog versions (Unix time)",
                value=self.watcher.checked_at,
            )


class PageStoreCollector(Collector):
    def __init__(self, store: PageStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        pages = CounterMetricFamily(
            "upshift_offer_pages",
            "Offer pages of the read model shared by replicas: served (a miss answered from a "
            "page another process or this one stored), stored (built here and kept), refused "
            "(stored by another build, or not sealed with this secret: built again)",
            labels=["result"],
        )
        for result in ("served", "stored", "refused"):
            pages.add_metric([result], getattr(self.store, result))
        yield pages
