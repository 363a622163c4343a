"""Browser pages: the finance dashboard, and the /demo product page with its demo-only controls.

Nothing here is part of the JSON API contract (no route is in the OpenAPI schema). The /demo
routes exist only in demo mode (`upshift serve --demo`, i.e. `UPSHIFT_SEED_DEMO=true`): they act
on the seeded `demo` account without a server key, which is fine for a local showcase and never
acceptable anywhere else, so outside demo mode they answer 404 like any unknown path.
"""

from __future__ import annotations

import html
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field, StrictBool, StrictInt, model_validator
from sqlalchemy.orm import Session
from starlette.staticfiles import StaticFiles

from service.api.deps import CatalogDep, ClockDep, SessionDep, SignerDep
from service.api.schemas import Strict
from service.domain.catalog import SEATS_FEATURE, Catalog
from service.domain.errors import NotFound, ValidationFailed
from service.domain.usage import UsageAction, UsageEvent
from service.services.account_state import mark_changed
from service.services.accounts import get_account
from service.services.demo import DEMO_ACCOUNT_ID
from service.services.tokens import issue_session_token
from service.services.usage import ingest_usage, usage_snapshot

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"
METERED_FEATURE = "api_calls"
# The page is a local showcase: an hour is long enough to play, short enough to be harmless.
DEMO_TOKEN_TTL_S = 3600
_TOKEN_PLACEHOLDER = "__UPSHIFT_SESSION_TOKEN__"
_NO_STORE = {"Cache-Control": "no-store"}
# The pages run only their own files (no inline script, nothing from another host) and say so.
_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'"
)
_PAGE = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
DEMO_HEADERS = {
    **_NO_STORE,
    **_PAGE,
    "Content-Security-Policy": f"{_POLICY}; frame-ancestors 'self'",
}
# A finance key is pasted into the dashboard: no other site may frame it (clickjacking).
DASHBOARD_HEADERS = {
    **_PAGE,
    "Content-Security-Policy": f"{_POLICY}; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}


def static_files() -> StaticFiles:
    """The widget, the page templates and their stylesheet, mounted at /static."""
    return StaticFiles(directory=STATIC_DIR)


def require_demo_mode(request: Request) -> None:
    if not request.app.state.settings.seed_demo:
        raise NotFound("the demo exists only in demo mode (upshift serve --demo)")


router = APIRouter(include_in_schema=False)
demo = APIRouter(prefix="/demo", dependencies=[Depends(require_demo_mode)])


@router.get("/dashboard")
def dashboard() -> FileResponse:
    """Static: the finance key is pasted into the page and never reaches the HTML."""
    return FileResponse(
        STATIC_DIR / "dashboard.html", media_type="text/html", headers=DASHBOARD_HEADERS
    )


class DemoMeter(BaseModel):
    used: int
    limit: int | None


class DemoStateOut(BaseModel):
    account_id: str
    tier: str
    seats: int = Field(description="Purchased seats")
    active_seats: DemoMeter
    api_calls: DemoMeter
    declining: bool = Field(description="The next local payment of the demo account is declined")


class SimulateIn(Strict):
    seats: Annotated[StrictInt, Field(ge=-1000, le=1000)] | None = Field(
        default=None, description="Active seats to add (negative: remove)"
    )
    api_calls: Annotated[StrictInt, Field(ge=1, le=1_000_000)] | None = Field(
        default=None, description="API calls to consume"
    )

    @model_validator(mode="after")
    def one_of(self) -> SimulateIn:
        if (self.seats is None) == (self.api_calls is None):
            raise ValueError("send exactly one of seats and api_calls")
        return self


class DeclineIn(Strict):
    decline: StrictBool


def _meter(used: int, limit: int | bool | None) -> DemoMeter:
    return DemoMeter(used=used, limit=None if isinstance(limit, bool) else limit)


def _state(request: Request, session: Session, catalog: Catalog, now: datetime) -> DemoStateOut:
    account = get_account(session, DEMO_ACCOUNT_ID)
    features = usage_snapshot(session, catalog, account, now).features
    seats = features[SEATS_FEATURE]
    calls = features.get(METERED_FEATURE)
    return DemoStateOut(
        account_id=account.id,
        tier=account.tier,
        seats=account.seats,
        active_seats=_meter(seats.used, seats.limit),
        api_calls=_meter(calls.used, calls.limit) if calls else DemoMeter(used=0, limit=None),
        declining=DEMO_ACCOUNT_ID in request.app.state.declining_accounts,
    )


@demo.get("")
def demo_page(session: SessionDep, clock: ClockDep, signer: SignerDep) -> HTMLResponse:
    """Relay's product page with the widget, holding a fresh session token for `demo` only."""
    try:
        get_account(session, DEMO_ACCOUNT_ID)
    except NotFound:
        return HTMLResponse(
            "<!doctype html><title>Upshift demo</title><p>The demo account is not seeded yet: "
            "start the service with <code>upshift serve --demo</code>.</p>",
            status_code=503,
            headers=DEMO_HEADERS,
        )
    token, _ = issue_session_token(signer, DEMO_ACCOUNT_ID, clock.now(), DEMO_TOKEN_TTL_S)
    page = (STATIC_DIR / "demo.html").read_text(encoding="utf-8")
    return HTMLResponse(
        page.replace(_TOKEN_PLACEHOLDER, html.escape(token, quote=True)), headers=DEMO_HEADERS
    )


@demo.get("/state")
def demo_state(
    request: Request, session: SessionDep, catalog: CatalogDep, clock: ClockDep
) -> DemoStateOut:
    return _state(request, session, catalog, clock.now())


@demo.post("/simulate")
def simulate(
    body: SimulateIn, request: Request, session: SessionDep, catalog: CatalogDep, clock: ClockDep
) -> DemoStateOut:
    """Report usage for the demo account as Relay's backend would: an active-seat reading or a
    batch of API calls, through the same usage service as `POST /v1/usage`."""
    now = clock.now()
    account = get_account(session, DEMO_ACCOUNT_ID)
    if body.seats is not None:
        active = usage_snapshot(session, catalog, account, now).features[SEATS_FEATURE].used
        event = (SEATS_FEATURE, max(0, active + body.seats), UsageAction.set)
    else:
        assert body.api_calls is not None
        event = (METERED_FEATURE, body.api_calls, UsageAction.increment)
    feature, quantity, action = event
    result = ingest_usage(
        session,
        catalog,
        now,
        [UsageEvent(0, f"demo-{uuid.uuid4()}", account.id, feature, quantity, now, action)],
    )
    if result.rejected:
        rejection = result.rejected[0]
        raise ValidationFailed(rejection.message, field=feature, code=rejection.code)
    # Usage moves offers: drop the account's cached offer inputs once this transaction commits.
    mark_changed(session, account.id)
    return _state(request, session, catalog, now)


@demo.put("/decline")
def decline(
    body: DeclineIn, request: Request, session: SessionDep, catalog: CatalogDep, clock: ClockDep
) -> DemoStateOut:
    """Make the demo account's local payments decline (or succeed again)."""
    declining: set[str] = request.app.state.declining_accounts
    if body.decline:
        declining.add(DEMO_ACCOUNT_ID)
    else:
        declining.discard(DEMO_ACCOUNT_ID)
    return _state(request, session, catalog, clock.now())


router.include_router(demo)
