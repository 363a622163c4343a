"""The hash chain: canonical bytes of an entry, its hash, and verifying a run of entries."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Final

from service.domain.ledger.movements import RECORD_FIELDS, LedgerEntryDraft
from service.domain.periods import require_utc

GENESIS_HASH: Final[str] = "0" * 64
_HEX = frozenset("0123456789abcdef")


def _canonical_value(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("booleans have no place in a ledger record")
    if isinstance(value, str):
        return str(value)  # StrEnum members become their plain value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, datetime):
        moment = require_utc(value).replace(tzinfo=None)
        return moment.isoformat(timespec="microseconds") + "Z"
    if isinstance(value, list | tuple):
        return [_canonical_value(item) for item in value]
    # Floats and Decimals are refused: money is integer minor units, and floats don't round-trip.
    raise TypeError(f"cannot canonicalize {type(value).__name__} value {value!r}")


def canonical_bytes(entry: LedgerEntryDraft | Mapping[str, object]) -> bytes:
    """Deterministic JSON of a ledger record: sorted keys, no whitespace, ASCII only.

    Accepts a draft or a stored row as a mapping with exactly RECORD_FIELDS as keys, so a row
    can be verified as stored even when its values would no longer pass the draft's checks.
    Datetimes are UTC ISO-8601 with microseconds and 'Z'; ints stay ints; None becomes null.
    """
    record = entry.to_record() if isinstance(entry, LedgerEntryDraft) else dict(entry)
    if set(record) != RECORD_FIELDS:
        missing = sorted(RECORD_FIELDS - set(record))
        extra = sorted(set(record) - RECORD_FIELDS)
        raise ValueError(f"ledger record fields differ: missing {missing}, unexpected {extra}")
    payload = {key: _canonical_value(value) for key, value in record.items()}
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _require_hash(value: str, what: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or not set(value) <= _HEX:
        raise ValueError(f"{what} must be 64 lower-case hex characters")
    return value


def chain_hash(prev_hash: str | None, entry: LedgerEntryDraft | Mapping[str, object]) -> str:
    """sha256 hex over the previous row's hash (64 zeros for the first row) + canonical bytes."""
    prev = GENESIS_HASH if prev_hash is None else _require_hash(prev_hash, "prev_hash")
    return hashlib.sha256(prev.encode("ascii") + canonical_bytes(entry)).hexdigest()


def verify_chain(
    rows: Iterable[tuple[LedgerEntryDraft | Mapping[str, object], str]],
    *,
    prev_hash: str | None = None,
) -> int | None:
    """The index of the first row whose stored hash does not match, or None if all match.

    Rows come in ledger (append) order. `prev_hash` resumes from a verified checkpoint instead
    of the genesis row. A row that cannot even be canonicalized counts as a mismatch.
    """
    prev = prev_hash
    for index, (entry, stored_hash) in enumerate(rows):
        try:
            expected = chain_hash(prev, entry)
        except (TypeError, ValueError):
            return index
        if expected != stored_hash:
            return index
        prev = stored_hash
    return None
