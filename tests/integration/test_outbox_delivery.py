"""Signal delivery: signed, retried with backoff against a failing endpoint, never lost."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, text

from service.adapters.db import make_session_factory, transaction
from service.adapters.outbox_repository import OutboxRepository
from service.api.app import create_app
from service.cli import main
from service.services.outbox import DeliveryConfig, deliver_due, sign, verify
from service.settings import Settings
from tests.fakes.clock import FakeClock
from tests.usage_fixtures import (
    WEBHOOK_SECRET,
    event,
    ingest,
    put_account,
    wait_for,
    webhook_receiver,
)


def config(*urls: str, base_s: float = 1.0) -> DeliveryConfig:
    return DeliveryConfig(
        endpoints=urls, secret=WEBHOOK_SECRET.encode(), timeout_s=5, retry_base_s=base_s
    )


def crossing_ids(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(text("SELECT id FROM signal_crossings")).scalars())


def attempts(engine: Engine) -> list[tuple[int, int | None, str | None]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT attempt, status_code, error FROM signal_delivery_attempts "
                "ORDER BY attempted_at, id"
            )
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


@pytest.fixture
def signals(client: TestClient, admin_headers: dict[str, str], ingest_headers: dict[str, str]):
    """Two accounts past their API-call limit: four signals in the outbox."""
    put_account(client, admin_headers, "acme", tier="starter", seats=3)
    put_account(client, admin_headers, "beta", tier="starter", seats=3)
    body = ingest(
        client,
        ingest_headers,
        event("a", quantity=10_000),
        event("b", account_id="beta", quantity=10_000),
    ).json()
    assert len(body["signals"]) == 4
    return body["signals"]


def test_a_failing_endpoint_is_retried_and_never_loses_a_signal(
    db: Engine, clock: FakeClock, signals: list[dict]
) -> None:
    factory = make_session_factory(db)
    with webhook_receiver(failures=5) as receiver, httpx.Client() as http:
        settings = config(receiver.url)
        reports = []
        for _ in range(20):
            reports.append(deliver_due(factory, settings, clock, http))
            if {r.payload["signal_id"] for r in receiver.accepted} == crossing_ids(db):
                break
            clock.advance(seconds=30)
    delivered = {r.payload["signal_id"] for r in receiver.accepted}
    assert delivered == crossing_ids(db) == {s["id"] for s in signals}
    assert len(receiver.accepted) == 4  # each once: a failed attempt is not a delivery
    assert sum(r.failed for r in reports) == 5 and sum(r.delivered for r in reports) == 4
    assert all(receiver.signature_ok(r) for r in receiver.received)
    assert all(r.headers["upshift-signal-id"] == r.payload["signal_id"] for r in receiver.received)
    log = attempts(db)
    assert [a for a in log if a[1] == 500] == [(1, 500, "HTTP 500")] * 4 + [(2, 500, "HTTP 500")]
    assert sum(1 for a in log if a[1] == 200) == 4
    with db.connect() as connection:
        pending = connection.execute(
            text("SELECT count(*) FROM signal_deliveries WHERE delivered_at IS NULL")
        ).scalar_one()
    assert pending == 0


def test_the_payload_is_the_signal_with_its_readiness_and_motion(
    db: Engine, clock: FakeClock, signals: list[dict]
) -> None:
    with webhook_receiver() as receiver, httpx.Client() as http:
        deliver_due(make_session_factory(db), config(receiver.url), clock, http)
    by_id = {r.payload["signal_id"]: r.payload for r in receiver.accepted}
    signal = next(s for s in signals if s["threshold_key"] == "api_calls_limit")
    payload = by_id[signal["id"]]
    assert payload == {
        "type": "upshift.threshold_crossed",
        "signal_id": signal["id"],
        "account_id": signal["account_id"],
        "threshold_key": "api_calls_limit",
        "feature": "api_calls",
        "level": "limit",
        "at_percent": 100,
        "used": 10_000,
        "limit": 10_000,
        "period_start": "2026-11-01T00:00:00+00:00",
        "period_end": "2026-12-01T00:00:00+00:00",
        "recorded_at": "2026-11-10T12:00:00+00:00",
        "motion": "self_serve",
        "acv": {"amount_minor": 2_900 * 12, "currency": "USD"},
        "readiness": {"score": 50, "reasons": ["at_limit:api_calls", "not_activated"]},
        "catalog_version": "2026-11-01.1",
    }
    [request] = [r for r in receiver.accepted if r.payload["signal_id"] == signal["id"]]
    assert request.headers["upshift-timestamp"] == str(int(clock.now().timestamp()))


def test_backoff_doubles_up_to_its_cap() -> None:
    settings = DeliveryConfig(endpoints=("http://x",), secret=b"s", retry_base_s=5, retry_max_s=60)
    assert [settings.retry_delay(n).total_seconds() for n in range(1, 7)] == [
        5,
        10,
        20,
        40,
        60,
        60,
    ]
    assert settings.retry_delay(10_000) == timedelta(seconds=60)


def test_a_worker_that_dies_mid_flight_is_redelivered_after_its_lease(
    db: Engine, clock: FakeClock, signals: list[dict]
) -> None:
    factory = make_session_factory(db)
    settings = config("http://127.0.0.1:9/never-called")
    now = clock.now()
    with transaction(factory) as session:
        OutboxRepository(session).fan_out(settings.endpoints, now, limit=100)
    with transaction(factory) as session:
        leased = OutboxRepository(session).claim_due(
            settings.endpoints, now, now + settings.lease, 100
        )
    assert len(leased) == 4
    # ...and the worker is gone. Nothing is due until the lease runs out.
    with webhook_receiver() as receiver, httpx.Client() as http:
        moved = config(receiver.url)
        assert deliver_due(factory, moved, clock, http).attempted == 0
        # The same signals, now for an endpoint that is configured, after the lease.
        with db.begin() as connection:
            connection.execute(
                text("UPDATE signal_deliveries SET endpoint = :url"), {"url": receiver.url}
            )
        assert deliver_due(factory, moved, clock, http).attempted == 0
        clock.advance(seconds=settings.lease.total_seconds() + 1)
        report = deliver_due(factory, moved, clock, http)
    assert report.delivered == 4
    assert {r.payload["signal_id"] for r in receiver.accepted} == crossing_ids(db)
    # The dead worker's late answer cannot undo the newer attempt's outcome.
    delivery_id, _, attempt, _ = leased[0]
    with transaction(factory) as session:
        OutboxRepository(session).record_attempt(
            delivery_id,
            attempt,
            at=clock.now(),
            status_code=None,
            error="timeout",
            duration_ms=1,
            retry_at=clock.now(),
        )
    with db.connect() as connection:
        delivered = connection.execute(
            text("SELECT delivered_at FROM signal_deliveries WHERE id = :id"), {"id": delivery_id}
        ).scalar_one()
    assert delivered is not None


def test_every_endpoint_gets_every_signal(
    db: Engine, clock: FakeClock, signals: list[dict]
) -> None:
    with (
        webhook_receiver() as crm,
        webhook_receiver(failures=4) as cs_tool,
        httpx.Client() as http,
    ):
        settings = config(crm.url, cs_tool.url)
        factory = make_session_factory(db)
        deliver_due(factory, settings, clock, http)
        clock.advance(seconds=5)
        deliver_due(factory, settings, clock, http)
    assert len(crm.accepted) == len(cs_tool.accepted) == 4
    assert len(cs_tool.received) == 8


def test_signatures_verify_and_refuse_tampering_and_stale_timestamps(clock: FakeClock) -> None:
    body = b'{"signal_id":"x"}'
    timestamp = int(clock.now().timestamp())
    signature = sign(b"secret", timestamp, body)
    assert verify(b"secret", body, str(timestamp), signature, clock.now(), tolerance_s=300)
    assert not verify(b"secret", body + b" ", str(timestamp), signature, clock.now(), 300)
    assert not verify(b"other", body, str(timestamp), signature, clock.now(), 300)
    later = clock.now() + timedelta(minutes=6)
    assert not verify(b"secret", body, str(timestamp), signature, later, 300)
    assert not verify(b"secret", body, "soon", signature, clock.now(), 300)


def test_configuration_is_checked() -> None:
    assert DeliveryConfig.from_settings(Settings(signal_webhook_urls=[])) is None
    with pytest.raises(ValueError, match="SIGNAL_WEBHOOK_SECRET is required"):
        DeliveryConfig.from_settings(Settings(signal_webhook_urls=["https://crm.example/hook"]))
    with pytest.raises(ValueError, match="not an http"):
        DeliveryConfig.from_settings(
            Settings(signal_webhook_urls=["ftp://x"], signal_webhook_secret=SecretStr("s"))
        )


def test_the_app_delivers_in_the_background_when_endpoints_are_configured(
    db: Engine,
    settings: Settings,
    clock: FakeClock,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
) -> None:
    with webhook_receiver(failures=1) as receiver:
        configured = settings.model_copy(
            update={
                "signal_webhook_urls": [receiver.url],
                "signal_webhook_secret": SecretStr(WEBHOOK_SECRET),
                "signal_delivery_poll_s": 0.05,
                "signal_retry_base_s": 0.05,
            }
        )
        app = create_app(configured, clock=clock, engine=db)
        with TestClient(app) as client:
            put_account(client, admin_headers, "acme", tier="starter", seats=3)
            ingest(client, ingest_headers, event("a", quantity=8_000))
            # The failed first attempt is due again 0.05 s later by the (fake) clock: keep it
            # moving while waiting, whenever the worker happens to schedule the retry.
            wait_for(lambda: bool(clock.advance(seconds=1)) and len(receiver.accepted) == 1)
    [delivered] = receiver.accepted
    assert delivered.payload["threshold_key"] == "api_calls_warn"
    assert receiver.signature_ok(delivered)


def test_deliver_command(
    db: Engine,
    database_url: str,
    clock: FakeClock,
    signals: list[dict],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = CliRunner()
    monkeypatch.setenv("UPSHIFT_DATABASE_URL", database_url)
    missing = runner.invoke(main, ["signals", "deliver", "--once"])
    assert missing.exit_code == 2 and "UPSHIFT_SIGNAL_WEBHOOK_URLS" in missing.output
    with webhook_receiver() as receiver:
        monkeypatch.setenv("UPSHIFT_SIGNAL_WEBHOOK_URLS", f'["{receiver.url}"]')
        unsigned = runner.invoke(main, ["signals", "deliver", "--once"])
        assert unsigned.exit_code == 2 and "SECRET is required" in unsigned.output
        monkeypatch.setenv("UPSHIFT_SIGNAL_WEBHOOK_SECRET", WEBHOOK_SECRET)
        result = runner.invoke(main, ["signals", "deliver", "--once"])
    assert result.exit_code == 0, result.output
    assert "fanned out 4, attempted 4, delivered 4, failed 0" in result.output
    assert len(receiver.accepted) == 4
