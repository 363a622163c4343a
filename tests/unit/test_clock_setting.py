"""UPSHIFT_NOW stops the service's clock: how tests and replays run the CLI at a chosen moment."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine

from service.api.app import create_app
from service.ports import FixedClock, SystemClock, clock_at
from service.settings import Settings


def test_now_is_read_from_the_environment_and_kept_in_utc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UPSHIFT_NOW", "2027-01-01T00:30:00+01:00")
    now = Settings().now
    assert now == datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert now is not None and now.utcoffset() is not None and now.tzinfo == UTC


def test_a_time_without_an_offset_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSHIFT_NOW", "2027-01-01T00:30:00")
    with pytest.raises(ValidationError, match="now"):
        Settings()


def test_the_clock_stops_at_now_when_set_and_is_the_systems_otherwise() -> None:
    moment = datetime(2027, 2, 28, 23, 59, 59, tzinfo=UTC)
    stopped = clock_at(moment)
    assert isinstance(stopped, FixedClock)
    assert stopped.now() == stopped.now() == moment
    assert isinstance(clock_at(None), SystemClock)


def test_the_app_runs_on_the_stopped_clock(db: Engine, settings: Settings) -> None:
    moment = datetime(2027, 12, 31, 23, 59, 50, tzinfo=UTC)
    app = create_app(settings.model_copy(update={"now": moment}), engine=db)
    assert app.state.clock.now() == moment
