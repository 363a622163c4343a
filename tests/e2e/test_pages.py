"""The page routes without a browser: demo mode on and off, the token in the page, the demo-only
controls, the static files, the OpenAPI document, and `upshift serve --demo` end to end."""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service.api.app import create_app
from service.api.openapi_doc import openapi_json
from service.services.demo import seed_demo
from service.settings import Settings
from tests.fakes.clock import FakeClock

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_client(db: Engine, settings: Settings, clock: FakeClock) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"seed_demo": True}), clock=clock, engine=db)
    seed_demo(app.state.session_factory, app.state.catalog, clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/demo"),
        ("GET", "/demo/state"),
        ("POST", "/demo/simulate"),
        ("PUT", "/demo/decline"),
    ],
)
def test_demo_routes_do_not_exist_outside_demo_mode(
    client: TestClient, method: str, path: str
) -> None:
    response = client.request(method, path, json={"seats": 1})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


def test_dashboard_and_static_files_are_always_served(client: TestClient) -> None:
    dashboard = client.get("/dashboard")
    assert dashboard.status_code == 200
    assert dashboard.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/dashboard.js">' in dashboard.text
    assert "/v1/reports/nrr" in client.get("/static/dashboard.js").text
    assert not re.search(r"upk_\w", dashboard.text)
    widget = client.get("/static/upshift.js")
    assert widget.status_code == 200
    assert "javascript" in widget.headers["content-type"]
    assert 'customElements.define("upshift-offers"' in widget.text
    assert client.get("/static/pages.css").status_code == 200
    assert client.get("/static/nope.js").status_code == 404


def test_pages_forbid_inline_script_sniffing_referrers_and_framing_the_dashboard(
    demo_client: TestClient,
) -> None:
    for path in ("/demo", "/dashboard"):
        page = demo_client.get(path)
        assert page.status_code == 200
        policy = page.headers["content-security-policy"]
        assert (
            "script-src 'self';" in policy and "'unsafe-inline'" not in policy.split("style-src")[0]
        ), path
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        # Every script of the page is a file of ours: nothing inline for the policy to allow.
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text), path
    dashboard = demo_client.get("/dashboard").headers
    assert "frame-ancestors 'none'" in dashboard["content-security-policy"]
    assert dashboard["x-frame-options"] == "DENY"


def test_pages_stay_out_of_the_openapi_document() -> None:
    paths = set(json.loads(openapi_json())["paths"])
    assert not {p for p in paths if p.startswith(("/demo", "/dashboard", "/static"))}


def test_no_page_reaches_out_to_another_host() -> None:
    for page in (REPO_ROOT / "service" / "static").iterdir():
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=\"(https?:)?//", text), page.name
        assert "import(" not in text and "@import" not in text, page.name


def test_demo_page_holds_a_session_token_for_the_demo_account_only(
    demo_client: TestClient,
) -> None:
    page = demo_client.get("/demo")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "upk_" not in page.text and "__UPSHIFT_SESSION_TOKEN__" not in page.text
    token = re.search(r'session-token="(ust_[^"]+)"', page.text).group(1)
    bearer = {"Authorization": f"Bearer {token}"}
    assert demo_client.get("/v1/accounts/demo/upgrade-offers", headers=bearer).status_code == 200
    assert demo_client.get("/v1/accounts/acme/upgrade-offers", headers=bearer).status_code == 404


def test_demo_controls_report_usage_and_toggle_declines(demo_client: TestClient) -> None:
    start = demo_client.get("/demo/state").json()
    assert start["tier"] == "starter" and start["active_seats"] == {"used": 0, "limit": 3}
    seats = demo_client.post("/demo/simulate", json={"seats": 2}).json()
    assert seats["active_seats"]["used"] == 2
    fewer = demo_client.post("/demo/simulate", json={"seats": -5}).json()
    assert fewer["active_seats"]["used"] == 0
    calls = demo_client.post("/demo/simulate", json={"api_calls": 8_500}).json()
    assert calls["api_calls"] == {"used": 8_500, "limit": 10_000}
    for bad in ({}, {"seats": 1, "api_calls": 1}, {"api_calls": 0}, {"seats": "1"}):
        refused = demo_client.post("/demo/simulate", json=bad)
        assert refused.status_code == 422, bad

    app: FastAPI = demo_client.app
    assert demo_client.put("/demo/decline", json={"decline": True}).json()["declining"] is True
    assert "demo" in app.state.declining_accounts
    assert demo_client.put("/demo/decline", json={"decline": False}).json()["declining"] is False
    assert "demo" not in app.state.declining_accounts


def test_demo_page_says_how_to_seed_when_the_account_is_missing(
    db: Engine, settings: Settings, clock: FakeClock
) -> None:
    app = create_app(settings.model_copy(update={"seed_demo": True}), clock=clock, engine=db)
    with TestClient(app) as client:
        page = client.get("/demo")
    assert page.status_code == 503 and "upshift serve --demo" in page.text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_demo_ends_by_printing_the_demo_url(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "UPSHIFT_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "UPSHIFT_CATALOG_PATH": str(REPO_ROOT / "pricing_catalog" / "catalog.yaml"),
        "UPSHIFT_NOW": "2026-12-03T18:00:00Z",
    }
    command = [sys.executable, "-m", "service.cli", "serve", "--demo", "--port", str(port)]
    server = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    output: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [output.put(line.rstrip("\n")) for line in server.stdout], daemon=True
    ).start()
    try:
        lines = [output.get(timeout=30)]
        while not lines[-1].startswith("demo: "):
            lines.append(output.get(timeout=30))
        assert lines[-1] == f"demo: http://127.0.0.1:{port}/demo", lines
        assert any("admin key (shown once): upk_" in line for line in lines)
        page = None
        for _ in range(100):
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/demo", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert page is not None and page.status_code == 200
        assert 'session-token="ust_' in page.text
        # The dashboard opens on a year of history: twelve months of MRR and a funnel.
        assert any(line.startswith("demo history: 32 accounts") for line in lines), lines
        key = next(line.split(": ")[-1] for line in lines if "admin key (shown once)" in line)
        nrr = httpx.get(
            f"http://127.0.0.1:{port}/v1/reports/nrr",
            params={"from": "2025-12-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        ).json()
        assert len(nrr["periods"]) == 12
        assert all(period["ending_mrr_minor"] > 0 for period in nrr["periods"])
        assert sum(row["accepted"] for row in nrr["offer_funnel"]["rows"]) > 0
    finally:
        server.terminate()
        server.wait(timeout=10)
