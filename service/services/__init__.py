"""Use cases: each runs inside the caller's single transaction and never commits itself."""
