"""The product frontend's page loads, answered before FastAPI sees the request.

The frontend calls GET upgrade-offers and GET entitlements on every page load with a session
token; Starlette's and FastAPI's per-request machinery (middleware, routing, dependency
solving, request and response objects) costs more than the answer from a cached account, and a
good part of a miss. This pure ASGI middleware answers exactly that case, with the same checks
(`deps.session_claims`) and the same bytes as the documented routes; a miss is read in a worker
thread (the event loop never waits on the database) and kept in the cache as the route keeps
it. Anything else (another credential, an error, a query string) goes on to the FastAPI route,
which produces every error. Counted in /metrics as the route.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, NamedTuple

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.deps import session_claims
from service.api.routes.entitlements import (
    ENTITLEMENTS_TEMPLATE,
    cached_entitlements_body,
    entitlements_body,
    read_account_entitlements,
)
from service.api.routes.offers import (
    JSON_HEADERS,
    OFFERS_TEMPLATE,
    cached_offers_body,
    offers_body,
    read_offers_page,
    stored_offers_page,
)
from service.api.schemas import AccountIdPattern
from service.domain.errors import DomainError
from service.services.tokens import SESSION_PREFIX

_ACCOUNT_ID = re.compile(AccountIdPattern)


class PageLoad(NamedTuple):
    path: re.Pattern[str]  # its one group: the account id
    template: str  # the route's, for /metrics
    answer: Callable[[Any, str, datetime], bytes | None]  # from the cache; None on a miss
    read: Callable[[Any, str, datetime], Any]  # a miss, kept in the cache (blocking)
    render: Callable[[Any, Any, datetime], bytes]  # the body of what `read` returned
    # A miss answered on the event loop, as `read` would (None: not there), before `read`.
    stored: Callable[[Any, str, datetime], Awaitable[Any]] | None = None


PAGE_LOADS = (
    PageLoad(
        re.compile(r"/v1/accounts/([^/]+)/upgrade-offers"),
        OFFERS_TEMPLATE,
        cached_offers_body,
        read_offers_page,
        offers_body,
        stored_offers_page,
    ),
    PageLoad(
        re.compile(r"/v1/accounts/([^/]+)/entitlements"),
        ENTITLEMENTS_TEMPLATE,
        cached_entitlements_body,
        read_account_entitlements,
        lambda _state, found, now: entitlements_body(found, now),
    ),
)


class PageLoadHotPath:
    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state
        metrics = state.metrics
        self.routes = [
            (
                load,
                metrics.requests.labels("GET", load.template, "200"),
                metrics.latency.labels("GET", load.template),
            )
            for load in PAGE_LOADS
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A query string (the endpoints take none) is left to the route and its checks.
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            for load, served, latency in self.routes:
                match = load.path.fullmatch(scope["path"])
                if match is None:
                    continue
                started = time.perf_counter()
                account_id = match.group(1)
                now = self._authorized(account_id, scope)
                body = None if now is None else load.answer(self.state, account_id, now)
                if body is None and now is not None:
                    body = await self._miss(load, account_id, now)
                if body is not None:
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 200,
                            "headers": [*JSON_HEADERS, (b"content-length", b"%d" % len(body))],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    served.inc()
                    latency.observe(time.perf_counter() - started)
                    return
                break
        await self.app(scope, receive, send)

    async def _miss(self, load: PageLoad, account_id: str, now: datetime) -> bytes | None:
        """The body of an account not cached, read in a worker thread; None on any error (an
        unknown account, the database refusing a connection): the full route reads again and
        answers with its problem (and logs what was unexpected)."""
        try:
            found = None
            if load.stored is not None:
                found = await load.stored(self.state, account_id, now)
            if found is None:
                found = await run_in_threadpool(load.read, self.state, account_id, now)
        except Exception:
            return None
        return load.render(self.state, found, now)

    def _authorized(self, account_id: str, scope: Scope) -> datetime | None:
        """Now, for a session token of this account; None: the full route answers."""
        state = self.state
        if not _ACCOUNT_ID.fullmatch(account_id):
            return None
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token.startswith(SESSION_PREFIX):
            return None
        now = state.clock.now()
        try:
            session_claims(state, token, account_id, now)
        except DomainError:
            return None
        return now
