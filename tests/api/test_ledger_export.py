"""GET /v1/ledger/export: streamed CSV and JSONL with documented columns, filtered by time."""

from __future__ import annotations

import csv
import io
import json

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service.domain.ledger import Engine as LedgerEngine
from service.services.ledger_export import EXPORT_COLUMNS
from tests.api.test_accounts import assert_problem
from tests.ledger_fixtures import Step, at, seed

HISTORY = [
    Step("acme", 17_800, at(2026, 1, 5)),
    Step("yen-co", 120_000, at(2026, 1, 9), currency="JPY"),
    Step("acme", 20_805, at(2026, 2, 3), LedgerEngine.SEAT, offer_id="off_1"),
    Step("acme", 0, at(2026, 3, 1)),
]


def export(client: TestClient, headers: dict[str, str], **query: str):
    response = client.get("/v1/ledger/export", params=query, headers=headers)
    assert response.status_code == 200, response.text
    return response


def test_csv_has_the_documented_columns_and_decimal_twins(
    client: TestClient, db: Engine, finance_headers: dict[str, str]
) -> None:
    seed(db, HISTORY)
    response = export(client, finance_headers)
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="ledger.csv"'
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    assert [row["id"] for row in rows] == ["1", "2", "3", "4"]
    seat = rows[2]
    assert (seat["kind"], seat["engine"], seat["offer_id"]) == ("expansion", "seat", "off_1")
    assert (seat["mrr_before_minor"], seat["mrr_before"]) == ("17800", "178.00")
    assert (seat["mrr_after_minor"], seat["mrr_after"]) == ("20805", "208.05")
    assert (seat["mrr_delta_minor"], seat["mrr_delta"]) == ("3005", "30.05")
    assert seat["occurred_at"] == "2026-02-03T12:00:00.000000Z"
    assert seat["signal_ids"] == "[]" and seat["days_since_activation"] == ""
    assert rows[1]["mrr_after"] == "120000"  # yen have no minor unit
    assert rows[3]["mrr_delta"] == "-208.05"
    assert rows[3]["prev_hash"] == seat["hash"]


def test_jsonl_has_the_same_keys_with_typed_values(
    client: TestClient, db: Engine, finance_headers: dict[str, str]
) -> None:
    seed(db, HISTORY)
    response = export(client, finance_headers, format="jsonl")
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) == 4 and list(lines[0]) == list(EXPORT_COLUMNS)
    assert lines[2]["mrr_delta_minor"] == 3_005 and lines[2]["mrr_delta"] == "30.05"
    assert lines[2]["signal_ids"] == [] and lines[0]["engine"] is None


def test_time_filters_are_half_open(
    client: TestClient, db: Engine, finance_headers: dict[str, str]
) -> None:
    seed(db, HISTORY)
    window = {"from": "2026-01-09T12:00:00Z", "to": "2026-03-01T12:00:00Z"}
    rows = list(csv.DictReader(io.StringIO(export(client, finance_headers, **window).text)))
    assert [row["id"] for row in rows] == ["2", "3"]


def test_an_empty_export_is_just_the_header(
    client: TestClient, finance_headers: dict[str, str]
) -> None:
    assert export(client, finance_headers).text == ",".join(EXPORT_COLUMNS) + "\n"
    assert export(client, finance_headers, format="jsonl").text == ""


def test_bad_export_queries_are_422(client: TestClient, finance_headers: dict[str, str]) -> None:
    bad_format = client.get("/v1/ledger/export?format=parquet", headers=finance_headers)
    assert_problem(bad_format, 422, "validation_error", "format")
    backwards = client.get(
        "/v1/ledger/export",
        params={"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        headers=finance_headers,
    )
    assert_problem(backwards, 422, "validation_error", "to")
