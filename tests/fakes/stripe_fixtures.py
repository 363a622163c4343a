"""Pytest fixtures for the fake Stripe server.

tests/conftest.py makes them available to every test (through tests/stripe_fixtures_app).

``fake_stripe`` (function scope) is a :class:`~tests.fakes.stripe_server.FakeStripe`
controller, reset before the test; the server behind it is started once per
session by ``fake_stripe_server`` and shut down at session teardown.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.stripe_server import FakeStripe

__all__ = ["fake_stripe", "fake_stripe_server"]


@pytest.fixture(scope="session")
def fake_stripe_server() -> Iterator[FakeStripe]:
    """One running fake Stripe server for the whole session (daemon thread)."""
    fake = FakeStripe().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_stripe(fake_stripe_server: FakeStripe) -> Iterator[FakeStripe]:
    """The fake Stripe controller with empty state and the clock at 2026-11-01T00:00:00Z."""
    fake_stripe_server.reset()
    fake_stripe_server.pending_update_raises = False
    yield fake_stripe_server
    errors = list(fake_stripe_server.internal_errors)
    fake_stripe_server.reset()
    assert not errors, "the fake Stripe server crashed:\n" + "\n".join(errors)
