"""Test clocks of the fake Stripe server: create, retrieve, list, advance.

A test clock holds the time of the objects that belong to it: a customer created with
`test_clock`, its subscriptions, invoices and schedules ("Time at which all objects belonging to
this clock are frozen": docs.stripe.com/api/test_clocks/object). Requests about those objects
run at the clock's `frozen_time` (FakeStripeState.on_clock_of), and the fake's own clock
(`FakeStripe.advance`) no longer moves them; advancing the clock does, renewing, expiring and
moving schedule phases on the way as the account's clock does for everything else
(docs.stripe.com/billing/testing/test-clocks/api-advanced-usage: "As you advance time, you can
see how your integration works when subscriptions end, renew, or undergo other changes").
"""

from __future__ import annotations

from typing import Any

from tests.fakes.stripe_billing import boundary
from tests.fakes.stripe_models import Event, StripeError, TestClock
from tests.fakes.stripe_state import FakeStripeState, only

__all__ = ["TestClockOps"]

Json = dict[str, Any]


class TestClockOps:
    """Mixin of the billing engine: the test-helper endpoints of test clocks."""

    __test__ = False  # not a pytest test class
    s: FakeStripeState

    def advance_to(self, target: int, clock: TestClock | None = None) -> list[Event]:
        raise NotImplementedError  # the billing engine's (stripe_schedules.BillingEngine)

    def create_test_clock(self, p: Json) -> Json:
        """docs.stripe.com/api/test_clocks/create: "Creates a new test clock that can be
        attached to new customers"; `frozen_time` is "The initial frozen time". The SDK's
        `customer` (attach an existing customer) is not modelled."""
        only(p, {"frozen_time", "name"})
        clock = TestClock(
            id=self.s.ids.new("clock"),
            created=self.s.now,
            frozen_time=p["frozen_time"],
            name=p.get("name") or None,
        )
        self.s.test_clocks[clock.id] = clock
        rendered = self.s.render_test_clock(clock)
        self.s.emit("test_helpers.test_clock.created", rendered)
        return rendered

    def list_test_clocks(self, p: Json) -> Json:
        only(p, {"limit", "starting_after", "ending_before"})
        rendered = [self.s.render_test_clock(c) for c in self.s.test_clocks.values()]
        return self.s.list_response(rendered, "/v1/test_helpers/test_clocks", p)

    def advance_test_clock(self, clock_id: str, p: Json) -> Json:
        """docs.stripe.com/api/test_clocks/advance: "Starts advancing a test clock to a
        specified time in the future. Advancement is done when status changes to Ready"; the
        answer is the clock with status `advancing` (its `frozen_time` still the old one).
        `frozen_time` "Must be after the test clock's current frozen time. Cannot be more than
        two intervals in the future from the shortest subscription in this test clock. If there
        are no subscriptions in this test clock, it cannot be more than two years in the
        future."

        The fake advances at once, before it answers the next request: a retrieve after the
        call finds the clock `ready` at its new time, and the events of the advancement
        (`test_helpers.test_clock.advancing`, what the objects on the clock did, then
        `test_helpers.test_clock.ready`) are all there."""
        only(p, {"frozen_time"})
        clock = self.s.test_clock(clock_id)
        target = p["frozen_time"]
        if clock.status != "ready":
            raise StripeError.invalid(
                f"The test clock {clock.id} is {clock.status}; it can be advanced only when it is "
                "ready."
            )
        if target <= clock.frozen_time:
            raise StripeError.invalid(
                f"The frozen time ({target}) must be after the test clock's current frozen time "
                f"({clock.frozen_time}).",
                "frozen_time",
            )
        limit = self._advance_limit(clock)
        if target > limit:
            raise StripeError.invalid(
                f"The frozen time ({target}) cannot be more than two intervals of the shortest "
                f"subscription on this test clock (two years without one) after its current "
                f"frozen time: at most {limit}.",
                "frozen_time",
            )
        clock.status, clock.advancing_to = "advancing", target
        answer = self.s.render_test_clock(clock)
        self.s.emit("test_helpers.test_clock.advancing", answer)
        self.advance_to(target, clock)
        clock.status, clock.advancing_to = "ready", None
        self.s.emit("test_helpers.test_clock.ready", self.s.render_test_clock(clock))
        return answer

    def _advance_limit(self, clock: TestClock) -> int:
        live = [
            sub
            for sub in self.s.subscriptions.values()
            if self.s.clock_id_of(sub.customer) == clock.id and sub.status != "canceled"
        ]
        if not live:
            return boundary(clock.frozen_time, "year", 1, 2)
        return min(boundary(clock.frozen_time, sub.interval, sub.interval_count, 2) for sub in live)
