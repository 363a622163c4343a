"""FastAPI's native OpenTelemetry follows the otel_enabled setting (off unless asked for)."""

from __future__ import annotations

import pytest

from service.api.app import telemetry_config
from service.settings import Settings


@pytest.mark.parametrize(("value", "enabled"), [(None, False), ("true", True), ("false", False)])
def test_otel_follows_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str | None, enabled: bool
) -> None:
    if value is None:
        monkeypatch.delenv("UPSHIFT_OTEL_ENABLED", raising=False)
    else:
        monkeypatch.setenv("UPSHIFT_OTEL_ENABLED", value)
    config = telemetry_config(Settings())
    assert config == {"tracing": enabled, "metrics": enabled, "logs": enabled}
