"""Stripe test clocks: an account's billing time follows the clock its subscription lives on."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from service.adapters.orm import AccountRow
from service.adapters.repositories import AccountRepository
from service.adapters.stripe_api import RemoteSubscription, utc
from service.services.account_state import mark_changed

log = logging.getLogger("upshift.test_clocks")

# "Advancement is done when status changes to Ready" (docs.stripe.com/api/test_clocks/advance):
# the clock's frozen time is then where everything on it stands.
CLOCK_EVENTS = frozenset({"test_helpers.test_clock.ready"})


def follow_clock(account: AccountRow, clock_id: str | None, frozen_time: datetime | None) -> bool:
    """Put the account on the test clock (None: on none) at its frozen time; True if it moved.

    A clock only moves forward ("you can only move it forward in time":
    docs.stripe.com/billing/testing/test-clocks/api-advanced-usage), so an older reading of
    the same clock (an event delivered late) never takes it back."""
    if frozen_time is None or clock_id is None:
        clock_id = frozen_time = None
    elif (
        clock_id == account.billing_test_clock_id
        and account.billing_frozen_time is not None
        and frozen_time <= account.billing_frozen_time
    ):
        return False
    if (clock_id, frozen_time) == (account.billing_test_clock_id, account.billing_frozen_time):
        return False
    account.billing_test_clock_id = clock_id
    account.billing_frozen_time = frozen_time
    return True


def follow_subscription_clock(account: AccountRow, remote: RemoteSubscription) -> bool:
    """The account on its subscription's test clock, as Stripe has it now."""
    return follow_clock(account, remote.test_clock, remote.frozen_time)


def clock_advanced(session: Session, clock: Mapping[str, Any], now: datetime) -> list[str]:
    """A `test_helpers.test_clock.ready` event: every account on that clock now stands at its
    frozen time (their offers are priced there from now on); returns the accounts moved."""
    moved: list[str] = []
    frozen_time = utc(int(clock["frozen_time"]))
    for account in AccountRepository(session).on_test_clock(str(clock["id"])):
        if follow_clock(account, account.billing_test_clock_id, frozen_time):
            account.updated_at = now
            moved.append(account.id)
    if moved:
        session.flush()
        for account_id in moved:
            mark_changed(session, account_id)
        log.info("test clock %s is at %s: accounts %s follow", clock["id"], frozen_time, moved)
    return moved
