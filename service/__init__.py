"""Upshift: self-serve upgrades and pricing tiers between a SaaS product and Stripe."""
