"""The signal outbox: signals are enqueued with the write that caused them, then delivered to
the configured HTTP endpoints, signed, retried with backoff, at least once."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db import transaction
from service.adapters.outbox_repository import OutboxRepository
from service.adapters.signal_repository import crossing_of
from service.domain.thresholds import Crossing, requested_tier
from service.ports import Clock
from service.settings import Settings

log = logging.getLogger("upshift.signals")

SIGNAL_TYPE = "upshift.threshold_crossed"
SALES_REQUEST_TYPE = "upshift.sales_requested"  # the customer asked to talk to sales
TIMESTAMP_HEADER = "Upshift-Timestamp"
SIGNATURE_HEADER = "Upshift-Signature"
SIGNAL_ID_HEADER = "Upshift-Signal-Id"


def signal_payload(crossing: Crossing, catalog_version: str) -> dict[str, Any]:
    """What a CRM or CS tool receives: the crossing, the values behind it, and who should act.
    A sales request has its own type and names the tier asked about."""
    tier = requested_tier(crossing)
    return {
        "type": SIGNAL_TYPE if tier is None else SALES_REQUEST_TYPE,
        **({} if tier is None else {"tier": tier}),
        "signal_id": crossing.id,
        "account_id": crossing.account_id,
        "threshold_key": crossing.threshold_key,
        "feature": crossing.feature,
        "level": crossing.level,
        "at_percent": crossing.at_percent,
        "used": crossing.used,
        "limit": crossing.limit,
        "period_start": crossing.period_start.isoformat(),
        "period_end": crossing.period_end.isoformat(),
        "recorded_at": crossing.recorded_at.isoformat(),
        "motion": crossing.motion,
        "acv": {"amount_minor": crossing.acv_minor, "currency": crossing.currency},
        "readiness": {"score": crossing.readiness_score, "reasons": list(crossing.reasons)},
        "catalog_version": catalog_version,
    }


def payload_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """`v1=` HMAC-SHA256 of "{timestamp}.{body}": the timestamp is signed, so a replay is dated."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(
    secret: bytes, body: bytes, timestamp: str, signature: str, now: datetime, tolerance_s: int
) -> bool:
    """What a receiver does: recompute the signature and refuse stale timestamps."""
    if not timestamp.isdigit() or abs(now.timestamp() - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    endpoints: tuple[str, ...]
    secret: bytes
    timeout_s: float = 5.0
    retry_base_s: float = 5.0
    retry_max_s: float = 3600.0
    poll_s: float = 2.0
    batch_size: int = 100

    @property
    def lease(self) -> timedelta:
        # Long enough that a live worker always settles its attempt before anyone retries it.
        return timedelta(seconds=self.timeout_s * 2 + 30)

    def retry_delay(self, attempt: int) -> timedelta:
        """Exponential backoff: base, 2×base, 4×base … capped; attempt counts from 1."""
        exponent = min(attempt - 1, 40)
        return timedelta(seconds=min(self.retry_base_s * 2**exponent, self.retry_max_s))

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryConfig | None:
        """None when no endpoint is configured; ValueError when the configuration is unusable."""
        endpoints = tuple(settings.signal_webhook_urls)
        if not endpoints:
            return None
        for url in endpoints:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"UPSHIFT_SIGNAL_WEBHOOK_URLS: not an http(s) URL: {url!r}")
        if settings.signal_webhook_secret is None:
            raise ValueError(
                "UPSHIFT_SIGNAL_WEBHOOK_SECRET is required when signal webhook URLs are set"
            )
        return cls(
            endpoints=endpoints,
            secret=settings.signal_webhook_secret.get_secret_value().encode(),
            timeout_s=settings.signal_webhook_timeout_s,
            retry_base_s=settings.signal_retry_base_s,
            retry_max_s=settings.signal_retry_max_s,
            poll_s=settings.signal_delivery_poll_s,
        )


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    fanned_out: int = 0
    attempted: int = 0
    delivered: int = 0
    failed: int = 0

    def __add__(self, other: DeliveryReport) -> DeliveryReport:
        return DeliveryReport(
            self.fanned_out + other.fanned_out,
            self.attempted + other.attempted,
            self.delivered + other.delivered,
            self.failed + other.failed,
        )


def deliver_due(
    factory: sessionmaker[Session],
    config: DeliveryConfig,
    clock: Clock,
    client: httpx.Client,
    *,
    max_rounds: int = 1000,
) -> DeliveryReport:
    """Fan out new signals, then attempt every delivery that is due now, until none is.

    A worker, not a request: it owns its transactions (one to fan out, one to lease a batch,
    one per attempt's outcome), so an HTTP call never runs inside a database transaction.
    """
    report = DeliveryReport()
    for _ in range(max_rounds):
        now = clock.now()
        with transaction(factory) as session:
            fanned = OutboxRepository(session).fan_out(config.endpoints, now, limit=1000)
        with transaction(factory) as session:
            claimed = OutboxRepository(session).claim_due(
                config.endpoints, now, now + config.lease, config.batch_size
            )
        report += DeliveryReport(fanned_out=fanned)
        if not claimed and not fanned:
            break
        for delivery_id, endpoint, attempt, row in claimed:
            payload = signal_payload(crossing_of(row), row.catalog_version)
            delivered = _attempt(
                factory, config, clock, client, delivery_id, endpoint, attempt, payload, row.id
            )
            report += DeliveryReport(
                attempted=1, delivered=int(delivered), failed=int(not delivered)
            )
    return report


def _attempt(
    factory: sessionmaker[Session],
    config: DeliveryConfig,
    clock: Clock,
    client: httpx.Client,
    delivery_id: int,
    endpoint: str,
    attempt: int,
    payload: dict[str, Any],
    signal_id: str,
) -> bool:
    body = payload_bytes(payload)
    timestamp = int(clock.now().timestamp())
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(config.secret, timestamp, body),
        # Receivers dedupe on it: delivery is at least once.
        SIGNAL_ID_HEADER: signal_id,
    }
    started = time.monotonic()
    status_code: int | None = None
    error: str | None = None
    try:
        response = client.post(endpoint, content=body, headers=headers, timeout=config.timeout_s)
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    duration_ms = int((time.monotonic() - started) * 1000)
    now = clock.now()
    retry_at = None if error is None else now + config.retry_delay(attempt)
    with transaction(factory) as session:
        OutboxRepository(session).record_attempt(
            delivery_id,
            attempt,
            at=now,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
            retry_at=retry_at,
        )
    if error is not None:
        log.warning("signal %s to %s failed (attempt %d): %s", signal_id, endpoint, attempt, error)
    return error is None


class DeliveryWorker:
    """A background thread that delivers the outbox every `poll_s` until stopped."""

    def __init__(
        self, factory: sessionmaker[Session], config: DeliveryConfig, clock: Clock
    ) -> None:
        self.factory = factory
        self.config = config
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="upshift-signals", daemon=True)

    def start(self) -> DeliveryWorker:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        with httpx.Client() as client:
            while not self._stop.is_set():
                try:
                    deliver_due(self.factory, self.config, self.clock, client)
                except Exception:
                    # The outbox keeps every signal; the next round tries again.
                    log.exception("signal delivery round failed")
                self._stop.wait(self.config.poll_s)


def start_delivery_worker(
    factory: sessionmaker[Session], settings: Settings, clock: Clock
) -> DeliveryWorker | None:
    """Start delivering when endpoints are configured; None otherwise."""
    config = DeliveryConfig.from_settings(settings)
    if config is None:
        return None
    return DeliveryWorker(factory, config, clock).start()
