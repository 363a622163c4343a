"""Contract-test fixtures: the fake Stripe server."""

from tests.fakes.stripe_fixtures import fake_stripe, fake_stripe_server

__all__ = ["fake_stripe", "fake_stripe_server"]
