"""Subscription schedules and the clock of the fake Stripe server.

Schedules are created ``from_subscription`` (one phase = the current period and
items) and then updated with ``phases``.  When the clock reaches a phase's
``end_date`` the next phase's items replace the subscription's (matched by price;
prorated with the phase's ``proration_behavior`` if the boundary is mid-period);
after the last phase ``end_behavior=release`` releases the subscription and
``cancel`` cancels it (schedule ``completed``).  At equal instants the order is:
phase transitions, pending-update expiries, period renewals.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.stripe_billing import boundary
from tests.fakes.stripe_models import (
    Event,
    Phase,
    PhaseItem,
    Price,
    Schedule,
    StripeError,
    Subscription,
    TestClock,
)
from tests.fakes.stripe_state import merge_metadata, only
from tests.fakes.stripe_subscriptions import SubscriptionOps
from tests.fakes.stripe_test_clocks import TestClockOps

__all__ = ["BillingEngine"]

Json = dict[str, Any]


class BillingEngine(SubscriptionOps, TestClockOps):
    """Everything billing-related the HTTP layer and the clock call into."""

    def create_schedule(self, p: Json) -> Json:
        only(p, {"from_subscription", "metadata"})
        if "from_subscription" not in p:
            raise StripeError.invalid(
                "The fake Stripe server only creates schedules `from_subscription`.",
                "from_subscription",
                "fake_unsupported_parameter",
            )
        sub = self.s.subscription(p["from_subscription"], "from_subscription")
        if sub.schedule is not None:
            raise StripeError.invalid(
                "You cannot migrate a subscription that is already attached to a schedule: "
                f"`{sub.schedule}`.",
                "from_subscription",
            )
        if sub.status == "canceled":
            raise StripeError.invalid(
                "You cannot create a schedule from a canceled subscription.", "from_subscription"
            )
        phase = Phase(
            start_date=sub.period_start,
            end_date=sub.period_end,
            items=[PhaseItem(it.price, it.quantity, dict(it.metadata)) for it in sub.items],
            currency=sub.currency,
        )
        sched = Schedule(
            id=self.s.ids.new("sub_sched"),
            created=self.s.now,
            customer=sub.customer,
            subscription=sub.id,
            phases=[phase],
            metadata=merge_metadata({}, p.get("metadata", {})),
        )
        self.s.schedules[sched.id] = sched
        before = self.s.render_subscription(sub)
        sub.schedule = sched.id
        after = self.s.render_subscription(sub)
        self.s.emit("subscription_schedule.created", self.s.render_schedule(sched))
        self.s.emit("customer.subscription.updated", after, self.s.diff(before, after))
        return self.s.render_schedule(sched)

    def update_schedule(self, sched_id: str, p: Json) -> Json:
        sched = self.s.schedule(sched_id)
        only(p, {"phases", "end_behavior", "proration_behavior", "metadata"})
        if sched.status not in ("active", "not_started"):
            raise StripeError.invalid(
                "You cannot update a subscription schedule that is currently in the "
                f"`{sched.status}` status. It must be in `not_started` or `active`."
            )
        if "end_behavior" in p and p["end_behavior"] not in ("release", "cancel"):
            raise StripeError.unsupported("end_behavior")
        phases = self._phases(sched, p["phases"]) if "phases" in p else None
        before = self.s.render_schedule(sched)
        if "end_behavior" in p:
            sched.end_behavior = p["end_behavior"]
        if "metadata" in p:
            sched.metadata = merge_metadata(sched.metadata, p["metadata"])
        if phases is not None:
            sched.phases = phases
            sched.current = 0
            sub = self.s.subscriptions[sched.subscription or ""]
            self._sync_items(
                sub,
                phases[0].items,
                self.s.now,
                p.get("proration_behavior", "create_prorations"),
                self._haystacks(sub.id),
            )
        after = self.s.render_schedule(sched)
        self.s.emit("subscription_schedule.updated", after, self.s.diff(before, after))
        return after

    def _phases(self, sched: Schedule, raw: list[Json]) -> list[Phase]:
        if not raw:
            raise StripeError.invalid("At least one phase is required.", "phases")
        current = sched.phases[sched.current]
        now = self.s.now
        out: list[Phase] = []
        for i, ph in enumerate(raw):
            pre = f"phases[{i}]"
            only(
                ph,
                {
                    "items",
                    "start_date",
                    "end_date",
                    "duration",
                    "proration_behavior",
                    "metadata",
                    "discounts",
                    "automatic_tax",
                },
                pre,
            )
            start = ph.get("start_date", current.start_date if i == 0 else out[-1].end_date)
            start = now if start == "now" else start
            if i == 0 and start != current.start_date:
                raise StripeError.invalid(
                    "You can not modify the start date of the current phase.",
                    f"{pre}[start_date]",
                )
            if i > 0 and start != out[-1].end_date:
                raise StripeError.invalid(
                    "Phases must be contiguous: a phase starts where the previous one ends.",
                    f"{pre}[start_date]",
                )
            if not ph.get("items"):
                raise StripeError.invalid(
                    f"Missing required param: {pre}[items].", f"{pre}[items]", "parameter_missing"
                )
            items: list[PhaseItem] = []
            prices: list[Price] = []
            for j, it in enumerate(ph["items"]):
                ipre = f"{pre}[items][{j}]"
                only(it, {"price", "quantity", "metadata"}, ipre)
                if "price" not in it:
                    raise StripeError.invalid(
                        f"Missing required param: {ipre}[price].",
                        f"{ipre}[price]",
                        "parameter_missing",
                    )
                prices.append(self._recurring_price(it["price"], f"{ipre}[price]"))
                items.append(
                    PhaseItem(
                        it["price"],
                        it.get("quantity", 1),
                        merge_metadata({}, it.get("metadata", {})),
                    )
                )
            if len({(x.currency, x.interval, x.interval_count) for x in prices}) > 1:
                raise StripeError.invalid(
                    "Currency and interval fields must match across all items of a phase.",
                    f"{pre}[items]",
                )
            if "end_date" in ph and "duration" in ph:
                raise StripeError.invalid(
                    "You may only set one of `end_date` and `duration`.", f"{pre}[end_date]"
                )
            if "end_date" in ph:
                end = now if ph["end_date"] == "now" else ph["end_date"]
            elif "duration" in ph:
                duration = ph["duration"]
                only(duration, {"interval", "interval_count"}, f"{pre}[duration]")
                end = boundary(start, duration["interval"], duration.get("interval_count", 1), 1)
            elif i == len(raw) - 1:
                end = boundary(start, prices[0].interval or "month", prices[0].interval_count, 1)
            else:
                raise StripeError.invalid(
                    f"Missing required param: {pre}[end_date].",
                    f"{pre}[end_date]",
                    "parameter_missing",
                )
            if end <= start or (i == 0 and end <= now):
                raise StripeError.invalid(
                    "The phase end_date must be after its start_date and in the future.",
                    f"{pre}[end_date]",
                )
            out.append(
                Phase(
                    start_date=start,
                    end_date=end,
                    items=items,
                    currency=prices[0].currency,
                    proration_behavior=ph.get("proration_behavior", "create_prorations"),
                    metadata=merge_metadata({}, ph.get("metadata", {})),
                    discounts=[dict(d) for d in ph.get("discounts") or []],
                    automatic_tax=dict(ph["automatic_tax"]) if "automatic_tax" in ph else None,
                )
            )
        return out

    def _sync_items(
        self,
        sub: Subscription,
        phase_items: list[PhaseItem],
        pd: int,
        behavior: str,
        haystacks: list[str],
    ) -> None:
        """Make ``sub``'s items equal a phase's items (matched by price)."""
        by_price = {it.price: it for it in sub.items}
        params: list[Json] = []
        kept: set[str] = set()
        for pi in phase_items:
            existing = by_price.get(pi.price)
            if existing is not None:
                kept.add(existing.id)
                params.append({"id": existing.id, "quantity": pi.quantity})
            else:
                params.append({"price": pi.price, "quantity": pi.quantity})
            if pi.metadata:
                params[-1]["metadata"] = dict(pi.metadata)
        params.extend({"id": it.id, "deleted": True} for it in sub.items if it.id not in kept)
        plan = self.plan_items(sub, params, pd, behavior, "phases", require_active=False)
        if not plan.changed and len(plan.items) == len(sub.items):
            sub.items = plan.items
            return
        self._execute(sub, plan, behavior, "allow_incomplete", haystacks)

    def release_schedule(self, sched_id: str, p: Json) -> Json:
        only(p, {"preserve_cancel_date"})
        sched = self.s.schedule(sched_id)
        if sched.status not in ("active", "not_started"):
            raise StripeError.invalid(
                f"You cannot release a subscription schedule that is `{sched.status}`."
            )
        self._release(sched, "released")
        return self.s.render_schedule(sched)

    def _release(self, sched: Schedule, status: str) -> None:
        sub = self.s.subscriptions.get(sched.subscription or "")
        before = self.s.render_schedule(sched)
        sched.status = status
        if status == "released":
            sched.released_at, sched.released_subscription = self.s.now, sched.subscription
        else:
            sched.completed_at = self.s.now
        sched.subscription = None
        after = self.s.render_schedule(sched)
        kind = "released" if status == "released" else "completed"
        self.s.emit(f"subscription_schedule.{kind}", after, self.s.diff(before, after))
        if sub is not None:
            sub_before = self.s.render_subscription(sub)
            sub.schedule = None
            sub_after = self.s.render_subscription(sub)
            self.s.emit(
                "customer.subscription.updated", sub_after, self.s.diff(sub_before, sub_after)
            )

    def cancel_schedule(self, sched_id: str, p: Json) -> Json:
        only(p, {"invoice_now", "prorate"})
        sched = self.s.schedule(sched_id)
        if sched.status not in ("active", "not_started"):
            raise StripeError.invalid(
                f"You cannot cancel a subscription schedule that is `{sched.status}`."
            )
        sub = self.s.subscriptions.get(sched.subscription or "")
        if sub is not None and sub.status != "canceled":
            self._cancel(sub, p.get("invoice_now", True), p.get("prorate", True))
        if sched.status != "canceled":
            sched.status, sched.canceled_at = "canceled", self.s.now
            self.s.emit("subscription_schedule.canceled", self.s.render_schedule(sched))
        return self.s.render_schedule(sched)

    def advance_to(self, target: int, clock: TestClock | None = None) -> list[Event]:
        """Run what falls due up to `target`, in time order: on the account's own time (`clock`
        None) for the objects on no test clock, or on `clock`'s for the objects that belong to
        it, whose "frozen_time" then becomes `target` (docs.stripe.com/api/test_clocks/advance).
        """
        outside = self.s.now
        start = outside if clock is None else clock.frozen_time
        if target < start:
            raise ValueError("the fake Stripe clock cannot go backwards")
        owner = None if clock is None else clock.id
        first = len(self.s.events)
        self.s.request_context = (None, None)
        self.s.request_haystacks = []
        self.s.now = start
        try:
            for _ in range(100_000):
                due = self._next_due(target, owner)
                if due is None:
                    break
                when, _, kind, object_id = due
                self.s.now = max(self.s.now, when)
                if kind == "phase":
                    self._next_phase(self.s.schedules[object_id])
                elif kind == "expire":
                    self._expire_pending(self.s.subscriptions[object_id])
                else:
                    self._renew(self.s.subscriptions[object_id])
            else:  # pragma: no cover - guards against a modelling bug looping forever
                raise RuntimeError("fake Stripe clock did not settle")
        finally:
            self.s.now = outside
        if clock is None:
            self.s.now = target
        else:
            clock.frozen_time = target
        return self.s.events[first:]

    def _next_due(self, target: int, owner: str | None) -> tuple[int, int, str, str] | None:
        """The next thing due by `target` among the objects on test clock `owner` (None: on
        none)."""
        due: list[tuple[int, int, str, str]] = []
        for sched in self.s.schedules.values():
            if sched.status == "active" and self.s.clock_id_of(sched.customer) == owner:
                due.append((sched.phases[sched.current].end_date, 0, "phase", sched.id))
        for sub in self.s.subscriptions.values():
            if self.s.clock_id_of(sub.customer) != owner:
                continue
            if sub.pending_update is not None:
                due.append((sub.pending_update.expires_at, 1, "expire", sub.id))
            if sub.status in ("active", "past_due"):
                due.append((sub.period_end, 2, "renew", sub.id))
        due = [d for d in due if d[0] <= target]
        return min(due) if due else None

    def _next_phase(self, sched: Schedule) -> None:
        sub = self.s.subscriptions[sched.subscription or ""]
        nxt = sched.current + 1
        if nxt >= len(sched.phases):
            if sched.end_behavior == "cancel" and sub.status != "canceled":
                self._cancel(sub, invoice_now=False, prorate_=False)
                self._release(sched, "completed")
            else:
                self._release(sched, "released")
            return
        before = self.s.render_schedule(sched)
        sched.current = nxt
        phase = sched.phases[nxt]
        sub_before = self.s.render_subscription(sub)
        haystacks = ["schedule", f"schedule {sched.id}", sched.id, sub.id]
        self._sync_items(sub, phase.items, self.s.now, phase.proration_behavior, haystacks)
        if phase.metadata:
            sub.metadata = merge_metadata(sub.metadata, phase.metadata)
        after = self.s.render_schedule(sched)
        self.s.emit("subscription_schedule.updated", after, self.s.diff(before, after))
        sub_after = self.s.render_subscription(sub)
        changes = self.s.diff(sub_before, sub_after)
        if changes:
            self.s.emit("customer.subscription.updated", sub_after, changes)

    def _expire_pending(self, sub: Subscription) -> None:
        before = self.s.render_subscription(sub)
        self._discard_pending_update(sub)
        after = self.s.render_subscription(sub)
        self.s.emit(
            "customer.subscription.pending_update_expired", after, self.s.diff(before, after)
        )

    def _renew(self, sub: Subscription) -> None:
        before = self.s.render_subscription(sub)
        if sub.cancel_at_period_end:
            now = self.s.now
            sub.status, sub.canceled_at, sub.ended_at = "canceled", now, now
            if sub.schedule is not None:
                self._release(self.s.schedules[sub.schedule], "completed")
            after = self.s.render_subscription(sub)
            self.s.emit("customer.subscription.deleted", after, self.s.diff(before, after))
            return
        previous_start, start = sub.period_start, sub.period_end
        sub.period_k += 1
        sub.period_start = sub.basis_start = start
        sub.period_end = boundary(sub.anchor, sub.interval, sub.interval_count, sub.period_k)
        lines = list(sub.pending_items)
        sub.pending_items = []
        for it in sub.items:
            price = self.s.prices[it.price]
            lines.append(self._full_line(sub.id, it.id, price, it.quantity, start, sub.period_end))
            it.billed_amount = self.net_of_discounts(sub, price.unit_amount * it.quantity)
            it.billed_from = start
            it.billed_price, it.billed_quantity = it.price, it.quantity
        inv = self._build_invoice(sub, lines, "subscription_cycle", (previous_start, start))
        haystacks = ["renewal", f"renewal {sub.id}", sub.id, sub.customer]
        outcome = self._outcome(inv, "allow_incomplete", haystacks)
        sub.latest_invoice = inv.id
        if outcome != "paid":
            sub.status = "past_due"
        after = self.s.render_subscription(sub)
        self.s.emit("customer.subscription.updated", after, self.s.diff(before, after))
        self._commit_invoice(inv, outcome)
