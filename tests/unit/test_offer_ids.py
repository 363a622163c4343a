"""Offer ids: sha256 of a documented JSON text, built from parts prepared once per cached plan."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from service.domain.accounts import AccountStatus, Plan, plan_to_json
from service.domain.catalog import Interval
from service.domain.offers import OfferCandidate, OfferEngine
from service.domain.periods import Period
from service.services.account_state import AccountState
from service.services.offers import offer_id, offer_id_material

START = datetime(2026, 11, 1, tzinfo=UTC)
names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), min_size=1, max_size=12)


@given(
    account_id=names,
    version=st.integers(1, 10**9),
    seats=st.integers(1, 500),
    addons=st.dictionaries(names, st.integers(1, 9), max_size=3),
    catalog_version=names,
    seconds=st.integers(0, 30 * 86_400),
)
def test_the_id_is_the_hash_of_the_documented_json(
    account_id: str,
    version: int,
    seats: int,
    addons: dict[str, int],
    catalog_version: str,
    seconds: int,
) -> None:
    target = Plan("business", Interval.month, seats, addons)
    account = AccountState(
        account_id,
        version,
        AccountStatus.active,
        "USD",
        Plan("growth", Interval.month, 5, {}),
        Period(START, START + timedelta(days=30)),
        None,
        None,
    )
    candidate = OfferCandidate(OfferEngine.upsell, target, "business", ("r",), ("s",), 50)
    pinned = START + timedelta(seconds=seconds)
    material = offer_id_material(account, candidate, plan_to_json(target), catalog_version)
    text = json.dumps(
        [
            account_id,
            version,
            "upsell",
            plan_to_json(target),
            int(pinned.timestamp()),
            catalog_version,
        ],
        sort_keys=True,
    )
    assert offer_id(material, pinned) == "off_" + hashlib.sha256(text.encode()).hexdigest()[:24]
