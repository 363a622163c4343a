"""Offer impressions go through the batched writer (COPY text on PostgreSQL) unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from service.adapters.db import make_session_factory
from service.adapters.offer_tables import OfferImpressionRow
from service.services import impressions
from service.services.impressions import SLICE, Impression, ImpressionBuffer, ImpressionStatic

AWKWARD = 'tab\there, new\nline, back\\slash, cr\r, quote" and \\N'


def test_awkward_text_and_nulls_survive_the_writer(
    client: TestClient, admin_headers: dict[str, str], db: Engine
) -> None:
    body = {"tier": "growth", "interval": "month", "seats": 10}
    assert client.put("/v1/accounts/acme", json=body, headers=admin_headers).status_code == 201
    static = ImpressionStatic.of(
        {
            "account_id": "acme",
            "engine": "upsell",
            "target": {"tier": AWKWARD, "addons": {"k": 1}},
            "currency": "USD",
            "reason_codes": [AWKWARD, "ünïcode"],
            "signal_ids": [],
            "days_since_activation": None,
            "in_activation_window": False,
            "catalog_version": "v\\1\t",
        }
    )
    shown = datetime(2026, 11, 23, 17, 0, 1, 123456, tzinfo=UTC)
    buffer = ImpressionBuffer(make_session_factory(db))
    buffer.add([Impression(static, "off_1", None, shown), Impression(static, "off_2", 250, shown)])
    assert buffer.flush() == 2
    with Session(db) as session:
        rows = list(session.scalars(select(OfferImpressionRow).order_by(OfferImpressionRow.id)))
    assert [(r.offer_id, r.amount_due_minor) for r in rows] == [("off_1", None), ("off_2", 250)]
    for row in rows:
        assert row.target == {"tier": AWKWARD, "addons": {"k": 1}}
        assert row.reason_codes == [AWKWARD, "ünïcode"]
        assert row.signal_ids == []
        assert (row.days_since_activation, row.in_activation_window) == (None, False)
        assert row.catalog_version == "v\\1\t"
        assert row.shown_at == shown


def test_a_failed_flush_writes_nothing_and_the_next_writes_each_row_once(
    client: TestClient, admin_headers: dict[str, str], db: Engine, monkeypatch
) -> None:
    body = {"tier": "growth", "interval": "month", "seats": 10}
    assert client.put("/v1/accounts/acme", json=body, headers=admin_headers).status_code == 201
    static = ImpressionStatic.of(
        {
            "account_id": "acme",
            "engine": "seat",
            "target": {"seats": 12},
            "currency": "USD",
            "reason_codes": [],
            "signal_ids": [],
            "days_since_activation": 3,
            "in_activation_window": True,
            "catalog_version": "v1",
        }
    )
    shown = datetime(2026, 11, 23, 17, 0, 1, tzinfo=UTC)
    rows = [Impression(static, f"off_{n}", n, shown) for n in range(SLICE * 2 + 5)]
    buffer = ImpressionBuffer(make_session_factory(db))
    buffer.add(rows)
    # Fail after the first slice was sent (PostgreSQL's COPY path), or while building the
    # insert (SQLite): the connection went away mid-flush.
    if buffer.copy_lines:
        target, name = impressions, "_hand_over_interpreter"
    else:
        target, name = Impression, "row"
    original = getattr(target, name)
    calls = []

    def failing(*args: object) -> object:
        calls.append(args)
        if len(calls) == (1 if buffer.copy_lines else SLICE + 3):
            raise RuntimeError("database went away")
        return original(*args)

    monkeypatch.setattr(target, name, failing)
    with pytest.raises(RuntimeError):
        buffer.flush()
    with Session(db) as session:
        assert session.scalar(select(func.count()).select_from(OfferImpressionRow)) == 0
    monkeypatch.setattr(target, name, original)
    assert buffer.flush() == len(rows)
    with Session(db) as session:
        written = list(session.scalars(select(OfferImpressionRow.offer_id)))
    assert sorted(written) == sorted(row.offer_id for row in rows)
