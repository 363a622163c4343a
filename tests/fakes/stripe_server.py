"""A strict, stateful, in-process fake of the Stripe API for contract tests.

Start it (the pytest fixture ``fake_stripe`` in :mod:`tests.fakes.stripe_fixtures`
does this) and point the real SDK at it::

    fake = FakeStripe().start()
    client = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.base_url},
                                 stripe_version=fake.api_version, max_network_retries=2)

Scope: the calls a subscription-upgrade service makes, in the current API shape
(``stripe`` 16.x, API version ``2026-10-28.endive``, ``billing_mode=flexible``):
customers, products, prices (lookup keys, ``transfer_lookup_key``), subscriptions
(create / retrieve / list / update / cancel), ``invoices.create_preview``,
invoices (retrieve / list / pay), subscription schedules (``from_subscription``,
update phases, release, cancel) and events.  See :mod:`tests.fakes.stripe_subscriptions`,
:mod:`tests.fakes.stripe_invoices` and :mod:`tests.fakes.stripe_schedules`
for the proration and payment rules.

Strictness
    Every request is validated against the SDK's own ``stripe.params`` TypedDict
    for the call: unknown parameters -> 400 ``parameter_unknown`` ("Received
    unknown parameter: x"), enum values outside the ``Literal`` set -> 400
    ``parameter_invalid_enum``, bad integers/booleans -> 400, missing required ->
    400 ``parameter_missing``; unknown ids -> 404 ``resource_missing`` (400 when the
    id is inside the parameters).  Parameters Stripe accepts but this fake does not
    model -> 400 ``fake_unsupported_parameter`` (never silently ignored).
    ``Authorization: Bearer sk_test_...`` is required (401 otherwise); a
    ``Stripe-Version`` other than the SDK's pinned version is rejected (400).

Idempotency
    POSTs with ``Idempotency-Key`` (the SDK sends one on every POST and reuses it on
    its retries): the first response is stored with a fingerprint of
    (method, path, params); same key + same request -> the stored response again
    with ``Idempotent-Replayed: true`` and no side effects; same key + different
    request -> 400 ``{"error": {"type": "idempotency_error", ...}}``.  As on Stripe,
    requests rejected by parameter validation are not stored; a 500 from an endpoint
    that began (``5xx_before_apply``) is stored and replayed, 500 again, for 24 h
    (docs.stripe.com/api/idempotent_requests); a 503 refused in front of the API is not.
    Keys expire after 24 h of fake time.

Faults (``fail_next(target, mode)``; ``target`` is an op name such as
``"subscriptions.update"``, a substring of ``"POST /v1/subscriptions/sub_..."``,
an object id, ``"renewal"``, or ``"*"``)
    ``timeout_after_apply``: the request is applied and its response stored, then
    the connection is dropped without a response (after ``hang_seconds``); the
    SDK sees a network error and retries with the same idempotency key, which
    replays the stored result -- the change is applied exactly once.
    ``5xx_before_apply``: 500 ``api_error`` without applying anything, saved under
    the idempotency key with ``Stripe-Should-Retry: false`` (the SDK does not retry
    it, and a retry with the same key gets it again); ``503_before_apply``: 503
    ``api_error``, nothing applied or saved (the SDK retries it); ``429_rate_limited``:
    429 ``rate_limit``, nothing applied or saved (the SDK does not retry it).
    ``card_declined``: the next matching *payment attempt* fails.  Error body
    (HTTP 402)::

        {"error": {"type": "card_error", "code": "card_declined",
                   "decline_code": "generic_decline", "message": "Your card was declined.",
                   "doc_url": "https://stripe.com/docs/error-codes/card-declined"}}

    - ``error_if_incomplete``: 402 as above; nothing is applied, no invoice kept.
    - ``pending_if_incomplete``: the items stay unchanged, the new invoice stays
      ``open`` (``latest_invoice``), ``pending_update`` holds ``expires_at`` (now +
      23 h, capped at the period end) and the would-be ``subscription_items``.
      As Stripe documents, the call *returns 200 with the subscription*; set
      ``fake.pending_update_raises = True`` to get the 402 above instead (state is
      the same either way).  Paying the invoice (``invoices.pay``) applies the
      update (``customer.subscription.pending_update_applied``); expiry discards it
      (``customer.subscription.pending_update_expired``, invoice voided).
    - ``allow_incomplete`` (default): the change is applied, the invoice stays
      open, the subscription becomes ``past_due`` (200).  On create: ``incomplete``.
    - ``default_incomplete``: no payment is attempted; applied, invoice ``open``,
      ``past_due`` (``incomplete`` on create) until ``invoices.pay``.
    - renewals (target ``"renewal"`` or the subscription id): invoice open,
      subscription ``past_due``.

Clock
    Starts at 2026-11-01T00:00:00Z.  ``advance(seconds)`` / ``set_time(ts)`` run,
    in time order, schedule phase boundaries, pending-update expiries and period
    renewals (a ``subscription_cycle`` invoice with pending proration items plus the
    new period, paid), emitting events.  Objects of a customer on a test clock
    (``test_helpers.test_clocks``, see :mod:`tests.fakes.stripe_test_clocks`) live on
    the clock's ``frozen_time`` instead, and move only when the clock is advanced.

Controller (:class:`FakeStripe`)
    ``start()``/``stop()`` (also a context manager), ``base_url``, ``api_key``,
    ``api_version``, ``webhook_secret``, ``client(max_network_retries=0, **kw)``,
    ``reset(now=None)``, ``now``, ``advance(seconds)``, ``set_time(ts)``,
    ``fail_next(target, mode, times=1, hang_seconds=0.0)``, ``armed_faults``,
    ``require_authentication(customer_id)`` (every payment of the customer needs its 3-D Secure
    step: ``requires_action``, ``invoice.payment_action_required``),
    ``complete_authentication(invoice_id, succeeded=True)`` (the step, as the hosted invoice
    page at ``/hosted/invoices/{id}`` does it),
    ``pending_update_raises``, ``update_count(sub_id)``, ``applied_updates``,
    ``requests``/``requests_for(target)``, ``events``/``events_of_type(type)``,
    ``object(id)``, ``customer_balance(cus_id)``, ``signed_payload(event)``,
    ``deliver(url_or_callable)``, ``internal_errors`` (tracebacks of bugs in the
    fake, answered as 500 ``api_error``; the pytest fixture fails the test on them).

Webhooks
    Every state change appends an Event (``data.object`` snapshot,
    ``data.previous_attributes`` for updates).  ``signed_payload(event)`` returns
    ``(body_bytes, "t=<unix>,v1=<hex hmac-sha256(secret, f'{t}.{body}')>")`` which
    ``stripe.Webhook.construct_event`` accepts; ``deliver(url_or_callable)`` posts
    the not-yet-delivered events.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import hashlib
import hmac
import html
import json
import re
import socket
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import stripe

from tests.fakes.stripe_models import Event, Fault, Faults, StripeError
from tests.fakes.stripe_params import ParamError, decode_form, validate_params
from tests.fakes.stripe_schedules import BillingEngine
from tests.fakes.stripe_state import DEFAULT_NOW, FakeStripeState

__all__ = ["FakeStripe", "RequestRecord"]

Json = dict[str, Any]
Handler = Callable[[FakeStripeState, BillingEngine, str, Json], Json]

_MAX_BODY = 1 << 20
_MAX_LOG = 10_000
_MAX_HANG = 30.0
_IDEMPOTENCY_TTL = 24 * 3600
_MAX_IDEMPOTENCY_KEYS = 50_000
_HOSTED_RE = re.compile(r"^/hosted/invoices/(?P<id>in_[A-Za-z0-9_]+)(?:/(?P<step>[a-z]+))?$")
_KEY_RE = re.compile(r"^Bearer ((?:sk|rk)_test_[A-Za-z0-9_]{1,200})$")


@dataclass(frozen=True)
class _Route:
    op: str
    method: str
    pattern: re.Pattern[str]
    params_class: str
    handler: Handler


def _r(op: str, method: str, path: str, params_class: str, handler: Handler) -> _Route:
    regex = "^" + path.replace("{id}", "(?P<id>[A-Za-z0-9_]+)") + "$"
    return _Route(op, method, re.compile(regex), params_class, handler)


_ROUTES: list[_Route] = [
    _r("customers.create", "POST", "/v1/customers", "CustomerCreateParams",
       lambda s, b, i, p: s.create_customer(p)),
    _r("customers.retrieve", "GET", "/v1/customers/{id}", "CustomerRetrieveParams",
       lambda s, b, i, p: s.render_customer(s.customer(i))),
    _r("customers.update", "POST", "/v1/customers/{id}", "CustomerUpdateParams",
       lambda s, b, i, p: s.update_customer(i, p)),
    _r("coupons.create", "POST", "/v1/coupons", "CouponCreateParams",
       lambda s, b, i, p: s.create_coupon(p)),
    _r("coupons.retrieve", "GET", "/v1/coupons/{id}", "CouponRetrieveParams",
       lambda s, b, i, p: s.render_coupon(s.coupon(i))),
    _r("tax_rates.create", "POST", "/v1/tax_rates", "TaxRateCreateParams",
       lambda s, b, i, p: s.create_tax_rate(p)),
    _r("tax_rates.retrieve", "GET", "/v1/tax_rates/{id}", "TaxRateRetrieveParams",
       lambda s, b, i, p: s.render_tax_rate(s.tax_rate(i))),
    _r("products.create", "POST", "/v1/products", "ProductCreateParams",
       lambda s, b, i, p: s.create_product(p)),
    _r("products.list", "GET", "/v1/products", "ProductListParams",
       lambda s, b, i, p: s.list_products(p)),
    _r("products.retrieve", "GET", "/v1/products/{id}", "ProductRetrieveParams",
       lambda s, b, i, p: s.render_product(s.product(i))),
    _r("products.update", "POST", "/v1/products/{id}", "ProductUpdateParams",
       lambda s, b, i, p: s.update_product(i, p)),
    _r("prices.create", "POST", "/v1/prices", "PriceCreateParams",
       lambda s, b, i, p: s.create_price(p)),
    _r("prices.list", "GET", "/v1/prices", "PriceListParams",
       lambda s, b, i, p: s.list_prices(p)),
    _r("prices.retrieve", "GET", "/v1/prices/{id}", "PriceRetrieveParams",
       lambda s, b, i, p: s.render_price(s.price(i))),
    _r("prices.update", "POST", "/v1/prices/{id}", "PriceUpdateParams",
       lambda s, b, i, p: s.update_price(i, p)),
    _r("subscriptions.create", "POST", "/v1/subscriptions", "SubscriptionCreateParams",
       lambda s, b, i, p: b.create_subscription(p)),
    _r("subscriptions.list", "GET", "/v1/subscriptions", "SubscriptionListParams",
       lambda s, b, i, p: b.list_subscriptions(p)),
    _r("subscriptions.retrieve", "GET", "/v1/subscriptions/{id}", "SubscriptionRetrieveParams",
       lambda s, b, i, p: s.render_subscription(s.subscription(i))),
    _r("subscriptions.update", "POST", "/v1/subscriptions/{id}", "SubscriptionUpdateParams",
       lambda s, b, i, p: b.update_subscription(i, p)),
    _r("subscriptions.cancel", "DELETE", "/v1/subscriptions/{id}", "SubscriptionCancelParams",
       lambda s, b, i, p: b.cancel_subscription(i, p)),
    _r("invoices.create_preview", "POST", "/v1/invoices/create_preview",
       "InvoiceCreatePreviewParams", lambda s, b, i, p: b.create_preview(p)),
    _r("invoices.list", "GET", "/v1/invoices", "InvoiceListParams",
       lambda s, b, i, p: b.list_invoices(p)),
    _r("invoices.retrieve", "GET", "/v1/invoices/{id}", "InvoiceRetrieveParams",
       lambda s, b, i, p: s.render_invoice(s.invoice(i))),
    _r("invoices.line_items.list", "GET", "/v1/invoices/{id}/lines", "InvoiceLineItemListParams",
       lambda s, b, i, p: b.list_lines(i, p)),
    _r("invoices.pay", "POST", "/v1/invoices/{id}/pay", "InvoicePayParams",
       lambda s, b, i, p: b.pay_invoice(i, p)),
    _r("subscription_schedules.create", "POST", "/v1/subscription_schedules",
       "SubscriptionScheduleCreateParams", lambda s, b, i, p: b.create_schedule(p)),
    _r("subscription_schedules.retrieve", "GET", "/v1/subscription_schedules/{id}",
       "SubscriptionScheduleRetrieveParams",
       lambda s, b, i, p: s.render_schedule(s.schedule(i))),
    _r("subscription_schedules.update", "POST", "/v1/subscription_schedules/{id}",
       "SubscriptionScheduleUpdateParams", lambda s, b, i, p: b.update_schedule(i, p)),
    _r("subscription_schedules.release", "POST", "/v1/subscription_schedules/{id}/release",
       "SubscriptionScheduleReleaseParams", lambda s, b, i, p: b.release_schedule(i, p)),
    _r("subscription_schedules.cancel", "POST", "/v1/subscription_schedules/{id}/cancel",
       "SubscriptionScheduleCancelParams", lambda s, b, i, p: b.cancel_schedule(i, p)),
    _r("webhook_endpoints.create", "POST", "/v1/webhook_endpoints",
       "WebhookEndpointCreateParams", lambda s, b, i, p: s.create_webhook_endpoint(p)),
    _r("webhook_endpoints.list", "GET", "/v1/webhook_endpoints", "WebhookEndpointListParams",
       lambda s, b, i, p: s.list_webhook_endpoints(p)),
    _r("test_helpers.test_clocks.create", "POST", "/v1/test_helpers/test_clocks",
       "test_helpers.TestClockCreateParams", lambda s, b, i, p: b.create_test_clock(p)),
    _r("test_helpers.test_clocks.list", "GET", "/v1/test_helpers/test_clocks",
       "test_helpers.TestClockListParams", lambda s, b, i, p: b.list_test_clocks(p)),
    _r("test_helpers.test_clocks.retrieve", "GET", "/v1/test_helpers/test_clocks/{id}",
       "test_helpers.TestClockRetrieveParams",
       lambda s, b, i, p: s.render_test_clock(s.test_clock(i))),
    _r("test_helpers.test_clocks.advance", "POST", "/v1/test_helpers/test_clocks/{id}/advance",
       "test_helpers.TestClockAdvanceParams", lambda s, b, i, p: b.advance_test_clock(i, p)),
    _r("events.retrieve", "GET", "/v1/events/{id}", "EventRetrieveParams",
       lambda s, b, i, p: s.event(i).render(s.api_version)),
    _r("events.list", "GET", "/v1/events", "EventListParams",
       lambda s, b, i, p: _list_events(s, p)),
]  # fmt: skip


def _list_events(state: FakeStripeState, p: Json) -> Json:
    for key in p:
        if key not in {"type", "types", "limit", "starting_after", "ending_before", "expand"}:
            raise StripeError.unsupported(key)
    events = [e.render(state.api_version) for e in state.events]
    if "type" in p:
        pattern = re.compile("^" + re.escape(p["type"]).replace(r"\*", "[^.]+") + "$")
        events = [e for e in events if pattern.match(e["type"])]
    if "types" in p:
        events = [e for e in events if e["type"] in set(p["types"])]
    return state.list_response(events, "/v1/events", p)


@dataclass
class RequestRecord:
    """One entry of :attr:`FakeStripe.requests` (``params`` typed once validated)."""

    method: str
    path: str
    op: str | None
    params: Json
    idempotency_key: str | None
    status: int = 0
    replayed: bool = False
    request_id: str = ""
    fault: str | None = None


@dataclass
class _Stored:
    fingerprint: str
    status: int
    body: bytes
    request_id: str
    created: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    drop_after: float | None = None  # seconds to hang, then drop the connection unanswered


def _json_bytes(obj: Json) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=False).encode("utf-8")


def _html(status: int, page: str, headers: dict[str, str] | None = None) -> _Response:
    content = {"Content-Type": "text/html; charset=utf-8", **(headers or {})}
    return _Response(status, page.encode("utf-8"), content)


def _error(status: int, error: Json) -> _Response:
    return _Response(status, _json_bytes({"error": error}))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    fake: FakeStripe


class _RequestHandler(BaseHTTPRequestHandler):
    # Headers and body go out in separate writes; without TCP_NODELAY each response waits for
    # the client's delayed ACK (~40 ms), which made every Stripe test crawl.
    disable_nagle_algorithm = True
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "FakeStripe/1.0"
    timeout = 120  # idle keep-alive connections are closed, so no handler thread lingers

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._send(_error(413, {"type": "invalid_request_error", "message": "Too large"}))
            self.close_connection = True
            return
        body = self.rfile.read(length).decode("utf-8") if length else ""
        response = self.server.fake._handle(method, self.path, dict(self.headers.items()), body)
        if response.drop_after is not None:
            time.sleep(min(response.drop_after, _MAX_HANG))
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(response)

    def _send(self, response: _Response) -> None:
        self.send_response(response.status)
        if "Content-Type" not in response.headers:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)


class FakeStripe:
    """Controller of one fake Stripe server (see the module docstring)."""

    def __init__(
        self,
        *,
        api_key: str = "sk_test_fake_upshift",
        webhook_secret: str = "whsec_fake_upshift_webhook_secret",
        now: int = DEFAULT_NOW,
        max_lifetime_seconds: float | None = None,
    ) -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.api_version: str = stripe.api_version
        self._initial_now = now
        self._state = FakeStripeState(self.api_version, now)
        self._billing = BillingEngine(self._state)
        self._idempotency: dict[str, _Stored] = {}
        self._log: collections.deque[RequestRecord] = collections.deque(maxlen=_MAX_LOG)
        self._delivered = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Timer | None = None
        self._max_lifetime = max_lifetime_seconds
        self.internal_errors: list[str] = []  # tracebacks of bugs in the fake itself

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeStripe:
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _RequestHandler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name="fake-stripe",
        )  # fmt: skip
        self._thread.start()
        self._state.hosted_base = self.base_url
        if self._max_lifetime is not None:
            self._watchdog = threading.Timer(self._max_lifetime, self.stop)
            self._watchdog.daemon = True
            self._watchdog.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("fake Stripe server is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def client(self, max_network_retries: int = 0, **kwargs: Any) -> stripe.StripeClient:
        """A real ``stripe.StripeClient`` wired to this fake (API version pinned)."""
        return stripe.StripeClient(
            kwargs.pop("api_key", self.api_key),
            base_addresses={"api": self.base_url},
            stripe_version=self.api_version,
            max_network_retries=max_network_retries,
            **kwargs,
        )

    def reset(self, now: int | None = None) -> None:
        """Forget every object, event, fault, stored idempotency key and logged request."""
        with self._state.lock:
            self._state.reset(self._initial_now if now is None else now)
            self._idempotency.clear()
            self._log.clear()
            self._delivered = 0
            self.internal_errors.clear()

    # ------------------------------------------------------------------ clock

    @property
    def now(self) -> int:
        return self._state.now

    def advance(self, seconds: int) -> list[Json]:
        """Move the clock forward, running renewals/phases/expiries; returns the new events."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        return self.set_time(self._state.now + int(seconds))

    def set_time(self, ts: int) -> list[Json]:
        """Set the clock; forward moves behave like :meth:`advance`.

        Moving backwards is only allowed while no subscription exists (test setup).
        """
        with self._state.lock:
            if ts < self._state.now:
                if self._state.subscriptions:
                    raise ValueError(
                        "cannot move the fake clock backwards once subscriptions exist"
                    )
                self._state.now = int(ts)
                return []
            events = self._billing.advance_to(int(ts))
            return [e.render(self.api_version) for e in events]

    # ------------------------------------------------------------------ faults / knobs

    def embed_lines(self, count: int) -> None:
        """Invoices embed their first `count` lines (Stripe: a page of 10) and page the rest:
        a test can make a short invoice need paging."""
        with self._state.lock:
            self._state.embedded_lines = count

    def fail_next(
        self, target: str, mode: str, *, times: int = 1, hang_seconds: float = 0.0
    ) -> None:
        """Arm a fault for the next ``times`` matching requests (or payment attempts)."""
        self._state.faults.add(Fault(target, mode, times, hang_seconds))

    @property
    def armed_faults(self) -> list[Fault]:
        return self._state.faults.pending()

    @property
    def pending_update_raises(self) -> bool:
        return self._state.pending_update_raises

    @pending_update_raises.setter
    def pending_update_raises(self, value: bool) -> None:
        self._state.pending_update_raises = value

    # ------------------------------------------------------------------ inspection

    def update_count(self, subscription_id: str) -> int:
        """How many ``POST /v1/subscriptions/{id}`` calls were applied (replays excluded)."""
        with self._state.lock:
            return self._state.update_counts[subscription_id]

    @property
    def applied_updates(self) -> dict[str, int]:
        with self._state.lock:
            return dict(self._state.update_counts)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._state.lock:
            return [copy.deepcopy(r) for r in self._log]

    def requests_for(self, target: str) -> list[RequestRecord]:
        """Logged requests whose op equals ``target`` or whose ``METHOD path`` contains it."""
        return [r for r in self.requests if r.op == target or target in f"{r.method} {r.path}"]

    @property
    def events(self) -> list[Json]:
        with self._state.lock:
            return [e.render(self.api_version) for e in self._state.events]

    def events_of_type(self, event_type: str) -> list[Json]:
        return [e for e in self.events if e["type"] == event_type]

    def object(self, object_id: str) -> Json:
        """The current API rendering of any stored object (KeyError if unknown)."""
        with self._state.lock:
            rendered = self._state.render_id(object_id)
        if rendered is None:
            raise KeyError(object_id)
        return rendered

    def customer_balance(self, customer_id: str) -> int:
        with self._state.lock:
            return self._state.customer(customer_id).balance

    def require_authentication(self, customer_id: str, required: bool = True) -> None:
        """The customer now pays with a card that "requires authentication on all
        transactions" (Stripe's test card 4000 0027 6000 3184): every payment attempt waits for
        the customer's 3-D Secure step (``invoice.payment_action_required``)."""
        with self._state.lock:
            self._state.customer(customer_id).requires_authentication = required

    def complete_authentication(self, invoice_id: str, succeeded: bool = True) -> Json:
        """The customer's 3-D Secure step for ``invoice_id``, as the hosted invoice page's
        buttons do it."""
        with self._state.lock:
            return self._billing.complete_authentication(invoice_id, succeeded)

    # ------------------------------------------------------------------ webhooks

    def signed_payload(
        self,
        event: Json | Event | str,
        timestamp: int | None = None,
        *,
        api_version: str | None = None,
    ) -> tuple[bytes, str]:
        """``(body, Stripe-Signature header)`` exactly as Stripe signs webhooks.

        ``timestamp`` defaults to the wall clock (``construct_event`` checks it against
        ``time.time()`` with a 300 s tolerance), not the fake clock. An event given by id or
        object is rendered in ``api_version`` (default: the SDK's).
        """
        version = api_version or self.api_version
        if isinstance(event, str):
            with self._state.lock:
                event = self._state.event(event).render(version)
        elif isinstance(event, Event):
            event = event.render(version)
        body = _json_bytes(event)
        t = int(time.time()) if timestamp is None else int(timestamp)
        signed = f"{t}.".encode() + body
        digest = hmac.new(self.webhook_secret.encode(), signed, hashlib.sha256).hexdigest()
        return body, f"t={t},v1={digest}"

    def deliver(
        self,
        target: str | Callable[[bytes, str], Any],
        events: list[Json] | None = None,
        *,
        timeout: float = 5.0,
    ) -> list[tuple[str, Any]]:
        """POST events to a URL (or call ``target(body, signature_header)``).

        Without ``events``, delivers every event created since the previous
        ``deliver`` call, rendered in the version of the webhook endpoint created at that URL
        (its ``api_version``, else the account default; docs.stripe.com/webhooks/versioning),
        or in the SDK's when no endpoint was created for it (as if it were pinned).
        Returns ``(event_id, http_status_or_callable_result)``.
        """
        if events is None:
            with self._state.lock:
                pending = self._state.events[self._delivered :]
                self._delivered = len(self._state.events)
                version = None if callable(target) else self._state.endpoint_api_version(target)
                events = [e.render(version or self.api_version) for e in pending]
        results: list[tuple[str, Any]] = []
        for event in events:
            body, header = self.signed_payload(event)
            if callable(target):
                results.append((event["id"], target(body, header)))
                continue
            request = urllib.request.Request(
                target,
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": header,
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=timeout) as reply:
                    results.append((event["id"], reply.status))
            except urllib.error.HTTPError as exc:
                results.append((event["id"], exc.code))
        return results

    # ------------------------------------------------------------------ HTTP core

    def _handle(self, method: str, raw_path: str, headers: dict[str, str], body: str) -> _Response:
        lower = {k.lower(): v for k, v in headers.items()}
        split = urlsplit(raw_path)
        path = split.path
        state = self._state
        hosted = _HOSTED_RE.match(path)
        if hosted is not None:
            return self._hosted_invoice_page(method, hosted["id"], hosted["step"])
        with state.lock:
            request_id = state.ids.new("req")
            base_headers = {"Request-Id": request_id, "Stripe-Version": self.api_version}
            record = RequestRecord(method, path, None, {}, lower.get("idempotency-key"))
            record.request_id = request_id
            self._log.append(record)
            response = self._handle_locked(method, path, split.query, lower, body, record)
            response.headers = {**base_headers, **response.headers}
            if record.idempotency_key and method == "POST":
                response.headers.setdefault("Idempotency-Key", record.idempotency_key)
            record.status = response.status
            return response

    def _handle_locked(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: str,
        record: RequestRecord,
    ) -> _Response:
        state = self._state
        auth = _KEY_RE.match(headers.get("authorization", ""))
        if auth is None:
            message = (
                "You did not provide an API key."
                if "authorization" not in headers
                else "Invalid API Key provided (the fake accepts any sk_test_... key)."
            )
            return _error(401, {"type": "invalid_request_error", "message": message})
        version = headers.get("stripe-version")
        if version is not None and version != self.api_version:
            return _error(
                400,
                {
                    "type": "invalid_request_error",
                    "message": f"The fake Stripe server only speaks API version "
                    f"{self.api_version}, not {version}.",
                },
            )
        route, object_id = self._route(method, path)
        if route is None:
            return _error(
                404,
                {
                    "type": "invalid_request_error",
                    "message": f"Unrecognized request URL ({method}: {path}).",
                },
            )
        record.op = route.op
        try:
            raw = decode_form(body if method == "POST" else query)
            record.params = raw
            params = validate_params(route.params_class, raw)
            record.params = params
        except ParamError as exc:
            error = {"type": "invalid_request_error", "code": exc.code, "param": exc.param}
            error["message"] = exc.message
            return _error(400, error)

        key = headers.get("idempotency-key") if method == "POST" else None
        fingerprint = hashlib.sha256(
            json.dumps([method, path, raw], sort_keys=True).encode()
        ).hexdigest()
        if key is not None:
            if len(key) > 255:
                return _error(
                    400,
                    {
                        "type": "invalid_request_error",
                        "message": "Idempotency keys can be at most 255 characters.",
                    },
                )
            stored = self._idempotency.get(key)
            if stored is not None and state.now - stored.created > _IDEMPOTENCY_TTL:
                del self._idempotency[key]
                stored = None
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    return _error(
                        400,
                        {
                            "type": "idempotency_error",
                            "message": "Keys for idempotent requests can only be used with the "
                            "same parameters they were first used with. Try using a key other "
                            f"than '{key}' if you meant to execute a different request.",
                        },
                    )
                record.replayed = True
                return _Response(
                    stored.status,
                    stored.body,
                    {
                        **stored.headers,
                        "Idempotent-Replayed": "true",
                        "Original-Request": stored.request_id,
                    },
                )

        haystacks = [route.op, f"{method} {path}", path]
        fault = state.faults.take(Faults.REQUEST_MODES, haystacks)
        if fault is not None:
            record.fault = fault.mode
        if fault is not None and fault.mode == "429_rate_limited":
            # "Too many requests hit the API too quickly. We recommend an exponential backoff
            # of your requests" (docs.stripe.com/error-codes#rate-limit). The rate limiter runs
            # before the idempotency layer (docs.stripe.com/error-low-level): nothing is saved.
            return _error(
                429,
                {
                    "type": "invalid_request_error",
                    "code": "rate_limit",
                    "message": "Too many requests hit the API too quickly. We recommend an "
                    "exponential backoff of your requests.",
                    "doc_url": "https://stripe.com/docs/error-codes/rate-limit",
                },
            )
        if fault is not None and fault.mode == "503_before_apply":
            # Refused in front of the API, before any endpoint ran: nothing is saved under the
            # key (as for a 429, which "runs before the API's idempotency layer":
            # docs.stripe.com/error-low-level), and the SDK retries it.
            return _error(
                503,
                {"type": "api_error", "message": "An unknown error occurred (injected fault)."},
            )
        if fault is not None and fault.mode == "5xx_before_apply":
            # The endpoint began and failed before changing anything. Stripe "saves the status
            # code and body of the first request made with a given idempotency key after
            # endpoint execution begins. Retries with the same key return the saved response,
            # including 500 errors" (docs.stripe.com/api/idempotent_requests), and marks such a
            # 500 Stripe-Should-Retry: false (the SDK's _should_retry: "we expect the
            # stripe-should-retry header to be false in most cases when a 500 is returned").
            response = _error(
                500,
                {"type": "api_error", "message": "An unknown error occurred (injected fault)."},
            )
            response.headers["Stripe-Should-Retry"] = "false"
            if key is not None:
                self._store(key, fingerprint, response, record.request_id, state.now)
            return response

        state.request_context = (record.request_id, key)
        state.request_haystacks = haystacks
        snapshot = state.snapshot() if method != "GET" else None
        try:
            with state.on_clock_of(object_id, params):
                result = route.handler(state, self._billing, object_id, params)
            if params.get("expand"):
                result = state.expand(result, params["expand"])
            response = _Response(200, _json_bytes(result))
        except StripeError as exc:
            # Stripe requests are atomic; some card errors, however, leave a trace
            # (a failed attempt on an invoice, a pending_update) as on Stripe.
            if snapshot is not None and not exc.keep_state:
                state.restore(snapshot)
            response = _error(exc.status, exc.error)
        except Exception as exc:  # a bug in the fake: surface it, never hang the client
            if snapshot is not None:
                state.restore(snapshot)
            self.internal_errors.append(traceback.format_exc())
            message = f"fake Stripe server bug: {exc!r} (see FakeStripe.internal_errors)"
            response = _Response(
                500,
                _json_bytes({"error": {"type": "api_error", "message": message}}),
                {"Stripe-Should-Retry": "false"},
            )
        finally:
            state.request_context = (None, None)
            state.request_haystacks = []
        if key is not None and response.status < 500:
            self._store(key, fingerprint, response, record.request_id, state.now)
        if fault is not None and fault.mode == "timeout_after_apply":
            response.drop_after = fault.hang_seconds
        return response

    def _hosted_invoice_page(self, method: str, invoice_id: str, step: str | None) -> _Response:
        """The hosted invoice page: "allows customers to view and pay an invoice" (the SDK's
        Invoice.hosted_invoice_url docstring). An open invoice whose payment needs the
        customer's authentication shows the two buttons of Stripe's test 3-D Secure page;
        POST /hosted/invoices/{id}/complete or /fail presses one. No API key: it is the
        customer's page."""
        state = self._state
        with state.lock:
            if invoice_id not in state.invoices:
                return _html(404, "<!doctype html><title>Not found</title><p>No such invoice.")
            if method == "POST" and step in ("complete", "fail"):
                try:
                    self._billing.complete_authentication(invoice_id, step == "complete")
                except StripeError as exc:
                    message = str(exc.error.get("message", "refused"))
                    return _html(409, f"<!doctype html><p>{html.escape(message)}")
                return _html(303, "", {"Location": f"/hosted/invoices/{invoice_id}"})
            if method != "GET" or step is not None:
                return _html(405, "<!doctype html><p>Method not allowed.")
            inv = state.invoices[invoice_id]
            pi = state.payment_intents.get(inv.payment_intent or "")
            waiting = inv.status == "open" and pi is not None and pi.status == "requires_action"
            amount = f"{inv.amount_due / 100:.2f} {inv.currency.upper()}"
            buttons = (
                f'<form method="post" action="/hosted/invoices/{invoice_id}/complete">'
                '<button type="submit">Complete authentication</button></form>'
                f'<form method="post" action="/hosted/invoices/{invoice_id}/fail">'
                '<button type="submit">Fail authentication</button></form>'
                if waiting
                else ""
            )
            page = (
                f"<!doctype html><title>Invoice {html.escape(inv.number or inv.id)}</title>"
                f"<h1>Invoice {html.escape(inv.number or inv.id)}</h1>"
                f'<p>Amount due: {amount}</p><p id="status">Status: {inv.status}</p>{buttons}'
            )
            return _html(200, page)

    def _store(
        self, key: str, fingerprint: str, response: _Response, request_id: str, now: int
    ) -> None:
        """Keep a response under its idempotency key for replays (24 h of fake time)."""
        headers = {k: v for k, v in response.headers.items() if k == "Stripe-Should-Retry"}
        self._idempotency[key] = _Stored(
            fingerprint, response.status, response.body, request_id, now, headers
        )
        while len(self._idempotency) > _MAX_IDEMPOTENCY_KEYS:
            del self._idempotency[next(iter(self._idempotency))]

    @staticmethod
    def _route(method: str, path: str) -> tuple[_Route | None, str]:
        for route in _ROUTES:
            if route.method != method:
                continue
            match = route.pattern.match(path)
            if match:
                return route, match.groupdict().get("id") or ""
        return None, ""
