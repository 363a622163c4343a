"""Helpers and fixtures of the usage and signals tests (import them explicitly)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from service.adapters.schema import metadata

USAGE_TABLES = (
    "usage_events",
    "usage_counters",
    "usage_milestones",
    "signal_crossings",
    "signal_outbox",
    "signal_deliveries",
    "signal_delivery_attempts",
)
WEBHOOK_SECRET = "whsec-test"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def event(
    event_id: str,
    *,
    account_id: str = "acme",
    feature: str = "api_calls",
    quantity: int = 1,
    timestamp: str = "2026-11-10T11:00:00Z",
    action: str = "increment",
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "account_id": account_id,
        "feature": feature,
        "quantity": quantity,
        "timestamp": timestamp,
        "action": action,
    }


def put_account(
    client: TestClient, headers: dict[str, str], account_id: str = "acme", **body: Any
) -> dict[str, Any]:
    plan = {"tier": "starter", "seats": 3, **body}
    response = client.put(f"/v1/accounts/{account_id}", json=plan, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response.json()


def ingest(client: TestClient, headers: dict[str, str], *events: dict[str, Any]) -> Any:
    return client.post("/v1/usage", json={"events": list(events)}, headers=headers)


def usage_of(client: TestClient, headers: dict[str, str], account_id: str = "acme") -> dict:
    response = client.get(f"/v1/accounts/{account_id}/usage", headers=headers)
    assert response.status_code == 200, response.text
    return {row["feature"]: row for row in response.json()["features"]}


def signals_of(client: TestClient, headers: dict[str, str], account_id: str = "acme") -> dict:
    response = client.get(f"/v1/accounts/{account_id}/signals", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in USAGE_TABLES
        }


def table_dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the usage tables, sorted: to prove that a request changed nothing."""
    dump = {}
    with engine.connect() as connection:
        for table in USAGE_TABLES:
            columns = [c.name for c in metadata.tables[table].columns]
            rows = connection.execute(text(f"SELECT {', '.join(columns)} FROM {table}")).all()
            dump[table] = sorted((tuple(map(str, row)) for row in rows), key=str)
    return dump


def crossing_keys(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT account_id, threshold_key, period_start FROM signal_crossings")
        ).all()
    return sorted((a, k, str(p)[:10]) for a, k, p in rows)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """The app under a real uvicorn server on loopback, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield base_url
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    status: int

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A local HTTP endpoint that fails the first `failures` requests, then accepts."""

    failures: int = 0
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.received if r.status == 200]

    def signature_ok(self, request: Received) -> bool:
        timestamp = request.headers["upshift-timestamp"]
        expected = hmac.new(
            WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256
        ).hexdigest()
        return hmac.compare_digest(request.headers["upshift-signature"], f"v1={expected}")


@contextlib.contextmanager
def webhook_receiver(failures: int = 0) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(failures=failures)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver._lock:
                status = 500 if len(receiver.received) < receiver.failures else 200
                receiver.received.append(
                    Received(body, {k.lower(): v for k, v in self.headers.items()}, status)
                )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/upshift"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def wait_for(condition: Any, what: str = "condition", timeout_s: float = 10.0) -> None:
    """A bounded wait for another thread's work; tests assert the outcome, not its speed."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s} s: {what}")
        time.sleep(0.02)
